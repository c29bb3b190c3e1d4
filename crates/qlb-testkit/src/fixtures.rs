//! The QUIC-LB configurations the tests share: keyed four-pass configurations at codepoints
//! 0 and 1, both with 2-octet server IDs and 6-octet nonces, so both make 9-octet CIDs and a
//! server can rotate from one to the other; and the same as `[[quic_lb]]` tables.
//!
//! ```
//! use qlb_testkit::fixtures;
//!
//! let config = fixtures::config(1);
//! assert_eq!(config.cid_len(), 9);
//! assert!(fixtures::table(1).contains("config_id = 1"));
//! assert!(fixtures::decoder(&[0, 1]).get(config.id()).is_some());
//! ```

use quic_lb::{Config, ConfigId, Decoder, Key};

/// The keys of codepoints 0 and 1, hex.
pub const KEYS: [&str; 2] = [
    "8f95f09245765f80256934e50c66207f",
    "0123456789abcdef0123456789abcdef",
];

/// The cluster secret test backends share (stateless resets and tokens).
pub const CLUSTER_SECRET: &[u8] = b"the test cluster's shared secret";

/// The keyed four-pass configuration at codepoint `id` (0 or 1; panics otherwise).
pub fn config(id: u8) -> Config {
    let key: Key = KEYS[usize::from(id)].parse().expect("hex key");
    Config::new(ConfigId::new(id).expect("codepoint"), 2, 6, Some(key)).expect("valid")
}

/// The `[[quic_lb]]` table of [`config`]`(id)`.
pub fn table(id: u8) -> String {
    format!(
        "[[quic_lb]]\nconfig_id = {id}\nserver_id_len = 2\nnonce_len = 6\nkey = \"{}\"\n",
        KEYS[usize::from(id)]
    )
}

/// A decoder holding [`config`] for each of `ids`, as a load balancer would.
pub fn decoder(ids: &[u8]) -> Decoder {
    let mut decoder = Decoder::new();
    for &id in ids {
        decoder.insert(config(id));
    }
    decoder
}
