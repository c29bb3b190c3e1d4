//! Retry tokens in the format quinn 0.11 servers seal and open under their token key
//! (`quinn-proto` `token.rs`), so that a backend validates what the load balancer minted and
//! sets the ODCID and RSCID transport parameters itself. `docs/retry.md` has the layout and
//! test vectors; a test against a real `qlb-server` pins it.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use ring::{aead, hkdf};
use thiserror::Error;

use crate::{
    initial::MAX_CID_LEN,
    keys::{TOKEN_LABEL, derive_cluster_key},
};

/// Octets of the random per-token nonce appended to the sealed payload.
pub const NONCE_LEN: usize = 16;
/// quinn's payload type octet of a Retry token.
const RETRY_TYPE: u8 = 0;
/// quinn's payload type octet of a NEW_TOKEN (validation) token.
const VALIDATION_TYPE: u8 = 1;
/// AES-256-GCM tag octets.
const TAG_LEN: usize = 16;

/// Why a token is not accepted.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum TokenError {
    /// Not sealed under any accepted key, or not in the token format.
    #[error("token does not open under any accepted key")]
    Invalid,
    /// Issued longer ago than the token lifetime.
    #[error("token expired")]
    Expired,
    /// Minted for another client address or port.
    #[error("token minted for another address")]
    WrongAddress,
    /// A NEW_TOKEN token (a server issued it for a later connection): answered with a Retry.
    #[error("a NEW_TOKEN token, not a Retry token")]
    NewToken,
    /// An original destination connection ID longer than 20 octets.
    #[error("connection ID longer than {MAX_CID_LEN} octets")]
    CidTooLong,
}

/// One token key: the HKDF PRK quinn's `HandshakeTokenKey` for ring is.
pub struct TokenKey(hkdf::Prk);

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// The token key of a cluster secret: the one `qlb-server` hands quinn.
    pub fn from_cluster_secret(secret: &[u8]) -> Self {
        Self(hkdf::Prk::new_less_safe(
            hkdf::HKDF_SHA256,
            &derive_cluster_key(secret, TOKEN_LABEL),
        ))
    }

    /// The PRK, for `quinn::ServerConfig::new`.
    pub fn prk(&self) -> &hkdf::Prk {
        &self.0
    }

    /// The per-token AES-256-GCM key: HKDF-Expand of the PRK with the nonce as info.
    fn aead(&self, nonce: &[u8]) -> aead::LessSafeKey {
        let mut key = [0u8; 32];
        self.0
            .expand(&[nonce], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut key))
            .expect("32 octets is a valid HKDF-SHA256 output length");
        aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_256_GCM, &key)
                .expect("a 32-octet key is valid for AES-256-GCM"),
        )
    }

    fn seal(
        &self,
        client: SocketAddr,
        odcid: &[u8],
        issued: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Vec<u8> {
        let mut token = Vec::with_capacity(1 + 17 + 2 + 1 + odcid.len() + 8 + TAG_LEN + NONCE_LEN);
        token.push(RETRY_TYPE);
        push_ip(&mut token, client.ip());
        token.extend_from_slice(&client.port().to_be_bytes());
        token.push(odcid.len() as u8);
        token.extend_from_slice(odcid);
        token.extend_from_slice(&issued.to_be_bytes());
        // Each token has its own key (from its nonce), so the all-zero AEAD nonce is used
        // once per key, as in quinn.
        self.aead(&nonce)
            .seal_in_place_append_tag(zero_nonce(), aead::Aad::empty(), &mut token)
            .expect("a token is within AES-GCM's limits");
        token.extend_from_slice(&nonce);
        token
    }

    fn open(&self, token: &[u8]) -> Option<Payload> {
        let nonce_at = token.len().checked_sub(NONCE_LEN)?;
        let (sealed, nonce) = token.split_at(nonce_at);
        let mut sealed = sealed.to_vec();
        let plain = self
            .aead(nonce)
            .open_in_place(zero_nonce(), aead::Aad::empty(), &mut sealed)
            .ok()?;
        Payload::parse(plain)
    }
}

/// The keys a load balancer accepts tokens under: it mints under the current one and also
/// accepts the previous one, so a key rotation does not fail handshakes in flight.
#[derive(Debug)]
pub struct TokenKeys {
    current: TokenKey,
    previous: Option<TokenKey>,
    lifetime_secs: u64,
}

/// A Retry token that validated.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ValidToken {
    odcid: [u8; MAX_CID_LEN],
    odcid_len: u8,
    /// When it was minted, in seconds since the Unix epoch.
    pub issued: u64,
}

impl ValidToken {
    /// The DCID of the client's first Initial, which the Retry answered.
    pub fn odcid(&self) -> &[u8] {
        &self.odcid[..usize::from(self.odcid_len)]
    }
}

impl TokenKeys {
    /// Keys that accept tokens for `lifetime_secs` seconds after they were minted (no longer
    /// than the backends' `retry_token_lifetime`, which quinn also checks).
    pub fn new(current: TokenKey, previous: Option<TokenKey>, lifetime_secs: u64) -> Self {
        Self {
            current,
            previous,
            lifetime_secs,
        }
    }

    /// A Retry token for `client` and `odcid`, minted at `now` (Unix seconds) under the
    /// current key; `nonce` must be random.
    ///
    /// ```
    /// use qlb_retry::{TokenKey, TokenKeys};
    ///
    /// let keys = TokenKeys::new(TokenKey::from_cluster_secret(b"s"), None, 10);
    /// let client = "192.0.2.1:4433".parse().unwrap();
    /// let token = keys.mint(client, &[1, 2, 3, 4, 5, 6, 7, 8], 1_000, [7; 16])?;
    /// assert_eq!(keys.validate(&token, client, 1_010)?.odcid(), &[1, 2, 3, 4, 5, 6, 7, 8]);
    /// assert!(keys.validate(&token, client, 1_011).is_err());
    /// # Ok::<(), qlb_retry::TokenError>(())
    /// ```
    pub fn mint(
        &self,
        client: SocketAddr,
        odcid: &[u8],
        now: u64,
        nonce: [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, TokenError> {
        if odcid.len() > MAX_CID_LEN {
            return Err(TokenError::CidTooLong);
        }
        Ok(self.current.seal(client, odcid, now, nonce))
    }

    /// The token's ODCID if it opens under the current or previous key, names `client` and
    /// was minted no more than the lifetime before `now` (Unix seconds).
    pub fn validate(
        &self,
        token: &[u8],
        client: SocketAddr,
        now: u64,
    ) -> Result<ValidToken, TokenError> {
        let payload = self
            .current
            .open(token)
            .or_else(|| self.previous.as_ref().and_then(|key| key.open(token)))
            .ok_or(TokenError::Invalid)?;
        let Payload::Retry {
            address,
            odcid,
            issued,
        } = payload
        else {
            return Err(TokenError::NewToken);
        };
        // quinn's check, so that what passes here passes at the backend.
        if issued.saturating_add(self.lifetime_secs) < now {
            return Err(TokenError::Expired);
        }
        if address != client {
            return Err(TokenError::WrongAddress);
        }
        Ok(ValidToken {
            odcid: odcid.0,
            odcid_len: odcid.1,
            issued,
        })
    }
}

/// The decrypted payload of a token.
enum Payload {
    Retry {
        address: SocketAddr,
        odcid: ([u8; MAX_CID_LEN], u8),
        issued: u64,
    },
    Validation,
}

impl Payload {
    fn parse(plain: &[u8]) -> Option<Self> {
        let (&kind, rest) = plain.split_first()?;
        let (ip, rest) = take_ip(rest)?;
        match kind {
            RETRY_TYPE => {
                let (port, rest) = rest.split_first_chunk::<2>()?;
                let (&len, rest) = rest.split_first()?;
                let len_usize = usize::from(len);
                if len_usize > MAX_CID_LEN || rest.len() != len_usize + 8 {
                    return None;
                }
                let (cid, issued) = rest.split_at(len_usize);
                let mut odcid = [0u8; MAX_CID_LEN];
                odcid[..len_usize].copy_from_slice(cid);
                Some(Self::Retry {
                    address: SocketAddr::new(ip, u16::from_be_bytes(*port)),
                    odcid: (odcid, len),
                    issued: u64::from_be_bytes(issued.try_into().ok()?),
                })
            }
            // Any well-formed validation token: its IP and time are the server's to judge.
            VALIDATION_TYPE if rest.len() == 8 => Some(Self::Validation),
            _ => None,
        }
    }
}

fn push_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => {
            out.push(0);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(1);
            out.extend_from_slice(&ip.octets());
        }
    }
}

fn take_ip(buf: &[u8]) -> Option<(IpAddr, &[u8])> {
    match buf.split_first()? {
        (0, rest) => {
            let (octets, rest) = rest.split_first_chunk::<4>()?;
            Some((IpAddr::V4(Ipv4Addr::from(*octets)), rest))
        }
        (1, rest) => {
            let (octets, rest) = rest.split_first_chunk::<16>()?;
            Some((IpAddr::V6(Ipv6Addr::from(*octets)), rest))
        }
        _ => None,
    }
}

fn zero_nonce() -> aead::Nonce {
    aead::Nonce::assume_unique_for_key([0u8; 12])
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "192.0.2.1:4433";

    fn keys(secret: &[u8], previous: Option<&[u8]>) -> TokenKeys {
        TokenKeys::new(
            TokenKey::from_cluster_secret(secret),
            previous.map(TokenKey::from_cluster_secret),
            15,
        )
    }

    fn client() -> SocketAddr {
        CLIENT.parse().expect("address")
    }

    /// The token of the vector published in docs/retry.md (`tests/docs_vector.rs` holds the
    /// document to this code).
    const VECTOR_TOKEN: &str = "0052bc516cb2d456b2f057323d53e901ced32ff29c054acf9794f0c7f21157949c4dee60c6e430c48930313233343536373839616263646566";

    /// Minting is deterministic given the nonce, and the vector round-trips.
    #[test]
    fn published_vector() {
        let keys = keys(b"qlb test vector secret", None);
        let odcid = hex::decode("8394c8f03e515708").expect("hex");
        let token = keys
            .mint(client(), &odcid, 1_700_000_000, *b"0123456789abcdef")
            .expect("a token");
        assert_eq!(hex::encode(&token), VECTOR_TOKEN);
        let valid = keys
            .validate(&token, client(), 1_700_000_015)
            .expect("valid within its lifetime");
        assert_eq!(valid.odcid(), odcid);
        assert_eq!(valid.issued, 1_700_000_000);
    }

    #[test]
    fn expired_wrong_address_and_foreign_tokens_are_refused() {
        let keys = keys(b"s", None);
        let token = keys.mint(client(), &[1; 8], 100, [3; 16]).expect("a token");
        assert_eq!(
            keys.validate(&token, client(), 116),
            Err(TokenError::Expired)
        );
        let other_port: SocketAddr = "192.0.2.1:4434".parse().expect("address");
        assert_eq!(
            keys.validate(&token, other_port, 100),
            Err(TokenError::WrongAddress)
        );
        let v6: SocketAddr = "[2001:db8::1]:4433".parse().expect("address");
        let token6 = keys.mint(v6, &[], 100, [4; 16]).expect("a token");
        assert_eq!(
            keys.validate(&token6, v6, 100).map(|t| t.odcid().len()),
            Ok(0)
        );
        let other = self::keys(b"other secret", None);
        assert_eq!(
            other.validate(&token, client(), 100),
            Err(TokenError::Invalid)
        );
        let mut flipped = token.clone();
        flipped[3] ^= 1;
        assert_eq!(
            keys.validate(&flipped, client(), 100),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            keys.validate(&[0; 15], client(), 100),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            keys.mint(client(), &[0; 21], 100, [0; 16]),
            Err(TokenError::CidTooLong)
        );
    }

    #[test]
    fn the_previous_key_is_accepted_and_not_minted_under() {
        let old = keys(b"old", None);
        let token = old.mint(client(), &[9; 4], 100, [5; 16]).expect("a token");
        let rotated = keys(b"new", Some(b"old"));
        assert!(rotated.validate(&token, client(), 100).is_ok());
        let fresh = rotated
            .mint(client(), &[9; 4], 100, [5; 16])
            .expect("a token");
        assert_eq!(
            old.validate(&fresh, client(), 100),
            Err(TokenError::Invalid)
        );
    }

    #[test]
    fn new_token_tokens_are_recognised() {
        let key = TokenKey::from_cluster_secret(b"s");
        // quinn's NEW_TOKEN payload: type 1, the client IP, the issue time.
        let mut token = vec![VALIDATION_TYPE, 0, 192, 0, 2, 1];
        token.extend_from_slice(&100u64.to_be_bytes());
        key.aead(&[6; 16])
            .seal_in_place_append_tag(zero_nonce(), aead::Aad::empty(), &mut token)
            .expect("sealed");
        token.extend_from_slice(&[6; 16]);
        let keys = TokenKeys::new(key, None, 15);
        assert_eq!(
            keys.validate(&token, client(), 100),
            Err(TokenError::NewToken)
        );
    }

    proptest::proptest! {
        #[test]
        fn garbage_never_validates(bytes: Vec<u8>) {
            let keys = keys(b"s", Some(b"t"));
            proptest::prop_assert!(keys.validate(&bytes, client(), 0).is_err());
        }
    }
}
