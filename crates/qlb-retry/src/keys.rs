//! Per-purpose keys derived from the cluster secret, so that every load balancer and server of
//! a cluster computes the same ones without sharing more than the secret.

use ring::hkdf;

/// HKDF-Extract salt: fixes the derivation to this protocol and version.
const SALT: &[u8] = b"qlb cluster keys v1";
/// HKDF-Expand label of the address-validation token key.
pub const TOKEN_LABEL: &[u8] = b"qlb token";
/// Octets of each derived key.
const KEY_LEN: usize = 32;

/// HKDF-SHA256 of `secret` (salt `"qlb cluster keys v1"`), expanded under `label` to 32
/// octets. Distinct labels give independent keys.
///
/// ```
/// use qlb_retry::derive_cluster_key;
///
/// assert_eq!(derive_cluster_key(b"s", b"a"), derive_cluster_key(b"s", b"a"));
/// assert_ne!(derive_cluster_key(b"s", b"a"), derive_cluster_key(b"s", b"b"));
/// ```
pub fn derive_cluster_key(secret: &[u8], label: &[u8]) -> [u8; KEY_LEN] {
    struct Len;
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            KEY_LEN
        }
    }
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(secret);
    let mut key = [0u8; KEY_LEN];
    prk.expand(&[label], Len)
        .and_then(|okm| okm.fill(&mut key))
        // HKDF-SHA256 refuses only outputs longer than 255 * 32 octets.
        .expect("32 octets is a valid HKDF-SHA256 output length");
    key
}
