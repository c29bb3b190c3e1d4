//! The stateless-reset key and the address-validation token key, derived from the cluster
//! secret so that every server of a cluster computes the same ones: a server that restarts,
//! or takes over another's server ID, can reset the connections it has no state for, and can
//! read tokens the others issued.

use std::fmt;

use ring::{hkdf, hmac};

/// HKDF-Extract salt: fixes the derivation to this protocol and version.
const SALT: &[u8] = b"qlb cluster keys v1";
/// HKDF-Expand label of the stateless-reset HMAC key.
const RESET_LABEL: &[u8] = b"qlb stateless reset";
/// HKDF-Expand label of the token key.
const TOKEN_LABEL: &[u8] = b"qlb token";
/// Octets of each derived key.
const KEY_LEN: usize = 32;

/// The two keys quinn needs; `Debug` never shows them.
pub(crate) struct ClusterKeys {
    /// Signs stateless-reset tokens ([`quinn::EndpointConfig::new`]).
    pub reset: hmac::Key,
    /// Seals Retry and NEW_TOKEN tokens ([`quinn::ServerConfig::new`]).
    pub token: hkdf::Prk,
}

impl ClusterKeys {
    /// Keys derived from a cluster secret with HKDF-SHA256 under two distinct labels.
    pub(crate) fn derive(secret: &[u8]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
        Self {
            reset: hmac::Key::new(hmac::HMAC_SHA256, &expand(&prk, RESET_LABEL)),
            token: hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &expand(&prk, TOKEN_LABEL)),
        }
    }

    /// Keys from a random secret, valid for this process only.
    pub(crate) fn random() -> Self {
        Self::derive(&rand::random::<[u8; KEY_LEN]>())
    }
}

impl fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterKeys(..)")
    }
}

/// `KEY_LEN` octets of HKDF-Expand output for `label`.
fn expand(prk: &hkdf::Prk, label: &[u8]) -> [u8; KEY_LEN] {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            KEY_LEN
        }
    }
    let mut key = [0u8; KEY_LEN];
    prk.expand(&[label], Len)
        .and_then(|okm| okm.fill(&mut key))
        // HKDF-SHA256 refuses only outputs longer than 255 * 32 octets.
        .expect("32 octets is a valid HKDF-SHA256 output length");
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset_tag(keys: &ClusterKeys) -> Vec<u8> {
        hmac::sign(&keys.reset, b"some connection id")
            .as_ref()
            .to_vec()
    }

    #[test]
    fn one_secret_gives_the_same_keys_everywhere() {
        let a = ClusterKeys::derive(b"cluster secret");
        let b = ClusterKeys::derive(b"cluster secret");
        assert_eq!(reset_tag(&a), reset_tag(&b));
        let mut token_a = [0u8; 32];
        let mut token_b = [0u8; 32];
        for (keys, out) in [(&a, &mut token_a), (&b, &mut token_b)] {
            keys.token
                .expand(&[b"x"], hkdf::HKDF_SHA256)
                .and_then(|okm| okm.fill(out))
                .expect("32 octets");
        }
        assert_eq!(token_a, token_b);
    }

    #[test]
    fn other_secrets_and_random_keys_differ() {
        let a = ClusterKeys::derive(b"cluster secret");
        assert_ne!(
            reset_tag(&a),
            reset_tag(&ClusterKeys::derive(b"cluster secreT"))
        );
        assert_ne!(
            reset_tag(&ClusterKeys::random()),
            reset_tag(&ClusterKeys::random())
        );
    }

    #[test]
    fn the_two_labels_give_independent_keys() {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(b"s");
        assert_ne!(expand(&prk, RESET_LABEL), expand(&prk, TOKEN_LABEL));
    }

    #[test]
    fn debug_shows_no_key() {
        assert_eq!(
            format!("{:?}", ClusterKeys::derive(b"s")),
            "ClusterKeys(..)"
        );
    }
}
