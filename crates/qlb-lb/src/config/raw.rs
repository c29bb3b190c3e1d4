//! The TOML file as written, before validation. Unknown keys are refused, so a misspelt
//! field is an error rather than a silently ignored line.

use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub cluster_secret: Option<String>,
    pub cluster_secret_file: Option<String>,
    #[serde(default)]
    pub listen: Vec<String>,
    pub workers: Option<i64>,
    pub mode: Option<String>,
    pub flow_idle_timeout: Option<String>,
    #[serde(default)]
    pub quic_lb: Vec<RawQuicLb>,
    #[serde(default)]
    pub backend: Vec<RawBackend>,
    pub health: Option<RawHealth>,
    pub admin: Option<RawAdmin>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQuicLb {
    pub config_id: i64,
    pub server_id_len: i64,
    pub nonce_len: i64,
    pub key: Option<String>,
    pub key_file: Option<String>,
    pub length_self_encoding: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackend {
    pub name: String,
    pub addr: String,
    pub server_id: String,
    pub weight: Option<i64>,
    pub state: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHealth {
    pub enabled: Option<bool>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub path: Option<String>,
    pub healthy_threshold: Option<i64>,
    pub unhealthy_threshold: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    pub listen: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<String>,
}
