//! The configuration the control plane's unit tests start from.

use crate::config::LbConfig;

/// Two backends (the file drains b2), an admin API, health thresholds of 2; `[health]`
/// comes last, so that keys can be appended to it.
pub(crate) const CONFIG: &str = r#"
listen = ["127.0.0.1:4433"]
workers = 1
[[quic_lb]]
config_id = 0
server_id_len = 2
nonce_len = 6
[[backend]]
name = "b1"
addr = "127.0.0.1:5001"
server_id = "0001"
[[backend]]
name = "b2"
addr = "127.0.0.1:5002"
server_id = "0002"
state = "draining"
[admin]
listen = "127.0.0.1:9901"
[health]
healthy_threshold = 2
unhealthy_threshold = 2
"#;

/// `text`, validated.
pub(crate) fn config(text: &str) -> LbConfig {
    LbConfig::from_toml(text, ".".as_ref()).expect("valid")
}

/// [`CONFIG`] with `from` (which must be in it) replaced by `to`, validated.
pub(crate) fn variant(from: &str, to: &str) -> LbConfig {
    assert!(CONFIG.contains(from), "{from}");
    config(&CONFIG.replacen(from, to, 1))
}
