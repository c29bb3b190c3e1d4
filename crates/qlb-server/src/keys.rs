//! The stateless-reset key and the address-validation token key, derived from the cluster
//! secret so that every server of a cluster computes the same ones: a server that restarts,
//! or takes over another's server ID, can reset the connections it has no state for, and can
//! read tokens the others issued.

use std::fmt;

use qlb_retry::{TokenKey, derive_cluster_key};
use ring::{hkdf, hmac};

/// HKDF-Expand label of the stateless-reset HMAC key.
const RESET_LABEL: &[u8] = b"qlb stateless reset";
/// Octets of a random secret.
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
    /// The token key is the one `qlb lb` mints Retry tokens under (`docs/retry.md`).
    pub(crate) fn derive(secret: &[u8]) -> Self {
        Self {
            reset: hmac::Key::new(hmac::HMAC_SHA256, &derive_cluster_key(secret, RESET_LABEL)),
            token: TokenKey::from_cluster_secret(secret).prk().clone(),
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
        assert_ne!(
            derive_cluster_key(b"s", RESET_LABEL),
            derive_cluster_key(b"s", qlb_retry::TOKEN_LABEL)
        );
    }

    #[test]
    fn debug_shows_no_key() {
        assert_eq!(
            format!("{:?}", ClusterKeys::derive(b"s")),
            "ClusterKeys(..)"
        );
    }
}
