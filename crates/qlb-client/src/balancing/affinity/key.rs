//! What a request is hashed by: a key the application passes ([`HashKey`]), or one read from
//! a header field or a cookie ([`HashPolicy`]); and the stable hash both use.

use http::HeaderMap;
use http::header::{self, HeaderName};

/// A request extension: the affinity key of this request for the `ring-hash` and `maglev`
/// pickers (a user or session id). It takes precedence over the client's [`HashPolicy`].
///
/// ```
/// let mut request = http::Request::get("/cart").body(String::new())?;
/// request.extensions_mut().insert(qlb_client::HashKey::new("user-42"));
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HashKey(Vec<u8>);

impl HashKey {
    /// A key of these bytes.
    ///
    /// ```
    /// let key = qlb_client::HashKey::new(42_u64.to_be_bytes());
    /// assert_eq!(key, qlb_client::HashKey::new([0, 0, 0, 0, 0, 0, 0, 42]));
    /// ```
    pub fn new(key: impl AsRef<[u8]>) -> Self {
        Self(key.as_ref().to_vec())
    }

    /// The key's hash: the same on every client, in every process.
    pub(crate) fn hash(&self) -> u64 {
        hash(&self.0)
    }
}

/// Where the `ring-hash` and `maglev` pickers find a request's key when it carries no
/// [`HashKey`]. A request without a key goes round robin.
///
/// ```
/// use qlb_client::HashPolicy;
///
/// let by_user = HashPolicy::Header(http::HeaderName::from_static("x-user-id"));
/// let by_session = HashPolicy::Cookie("session".to_owned());
/// assert_ne!(by_user, by_session);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum HashPolicy {
    /// Only [`HashKey`] extensions (the default).
    #[default]
    Explicit,
    /// The value of this header field (the first one, if repeated).
    Header(HeaderName),
    /// The value of the cookie of this name in the `Cookie` field(s).
    Cookie(String),
}

impl HashPolicy {
    /// The key hash of a request with these `headers`, or None when it carries none.
    pub(crate) fn key(&self, headers: &HeaderMap) -> Option<u64> {
        match self {
            Self::Explicit => None,
            Self::Header(name) => headers.get(name).map(|value| hash(value.as_bytes())),
            Self::Cookie(name) => cookie(headers, name).map(hash),
        }
    }
}

/// The value of cookie `name` in the `Cookie` fields (RFC 6265 section 5.4: `a=1; b=2`).
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&byte| byte == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let at = pair.iter().position(|&byte| byte == b'=')?;
            (pair[..at].trim_ascii() == name.as_bytes()).then(|| pair[at + 1..].trim_ascii())
        })
}

/// FNV-1a, then the splitmix64 finaliser: stable across processes and Rust versions (so
/// that every client maps a key to the same backend), and well spread even for short keys.
pub(crate) fn hash(bytes: &[u8]) -> u64 {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        state ^= u64::from(byte);
        state = state.wrapping_mul(0x0100_0000_01b3);
    }
    mix(state)
}

/// splitmix64's finaliser: every input bit flips about half the output bits.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| {
                (
                    HeaderName::from_static(name),
                    http::HeaderValue::from_static(value),
                )
            })
            .collect()
    }

    #[test]
    fn the_hash_is_fixed_and_spreads() {
        // Fixed forever: clients of different builds must agree.
        assert_eq!(hash(b""), mix(0xcbf2_9ce4_8422_2325));
        assert_eq!(HashKey::new("a").hash(), hash(b"a"));
        assert_ne!(hash(b"a"), hash(b"b"));
        let high_bits: std::collections::HashSet<u64> =
            (0..256_u32).map(|i| hash(&i.to_be_bytes()) >> 56).collect();
        assert!(high_bits.len() > 128, "{}", high_bits.len());
    }

    #[test]
    fn keys_come_from_the_named_header_or_cookie() {
        let map = headers(&[
            ("x-user", "alice"),
            ("cookie", "theme=dark; session = s1 "),
            ("cookie", "other=2"),
        ]);
        let header = HashPolicy::Header(HeaderName::from_static("x-user"));
        assert_eq!(header.key(&map), Some(hash(b"alice")));
        assert_eq!(
            HashPolicy::Cookie("session".into()).key(&map),
            Some(hash(b"s1"))
        );
        assert_eq!(
            HashPolicy::Cookie("other".into()).key(&map),
            Some(hash(b"2"))
        );
        assert_eq!(HashPolicy::Cookie("sess".into()).key(&map), None);
        assert_eq!(HashPolicy::Explicit.key(&map), None);
        let missing = HashPolicy::Header(HeaderName::from_static("x-tenant"));
        assert_eq!(missing.key(&map), None);
    }
}
