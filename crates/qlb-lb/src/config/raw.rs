//! The TOML file as written, before validation. Unknown keys are refused, so a misspelt
//! field is an error rather than a silently ignored line.

use serde::Deserialize;
use serde::de::IgnoredAny;

/// The whole file, as the load balancer reads it.
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
    pub max_flows: Option<i64>,
    pub max_unconfirmed_flows: Option<i64>,
    #[serde(default)]
    pub quic_lb: Vec<RawQuicLb>,
    #[serde(default)]
    pub backend: Vec<RawBackend>,
    pub health: Option<RawHealth>,
    pub admin: Option<RawAdmin>,
    pub retry: Option<RawRetry>,
    pub gue: Option<RawGue>,
    pub xdp: Option<RawXdp>,
    pub etcd: Option<RawEtcd>,
}

/// The whole file, as every member of the cluster reads it: the shared part, and the load
/// balancer's own keys (those of [`RawConfig`] but the shared ones) known but skipped, so
/// that one file serves everyone and a misspelt key is still refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    pub cluster_secret: Option<String>,
    pub cluster_secret_file: Option<String>,
    #[serde(default)]
    pub quic_lb: Vec<RawQuicLb>,
    #[serde(rename = "listen")]
    _listen: Option<IgnoredAny>,
    #[serde(rename = "workers")]
    _workers: Option<IgnoredAny>,
    #[serde(rename = "mode")]
    _mode: Option<IgnoredAny>,
    #[serde(rename = "flow_idle_timeout")]
    _flow_idle_timeout: Option<IgnoredAny>,
    #[serde(rename = "max_flows")]
    _max_flows: Option<IgnoredAny>,
    #[serde(rename = "max_unconfirmed_flows")]
    _max_unconfirmed_flows: Option<IgnoredAny>,
    #[serde(rename = "backend")]
    _backend: Option<IgnoredAny>,
    #[serde(rename = "health")]
    _health: Option<IgnoredAny>,
    #[serde(rename = "admin")]
    _admin: Option<IgnoredAny>,
    #[serde(rename = "retry")]
    _retry: Option<IgnoredAny>,
    #[serde(rename = "gue")]
    _gue: Option<IgnoredAny>,
    #[serde(rename = "xdp")]
    _xdp: Option<IgnoredAny>,
    #[serde(rename = "etcd")]
    _etcd: Option<IgnoredAny>,
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
    pub health_addr: Option<String>,
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
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetry {
    pub mode: Option<String>,
    pub threshold: Option<i64>,
    pub token_lifetime: Option<String>,
    pub previous_cluster_secret: Option<String>,
    pub previous_cluster_secret_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGue {
    pub bind: Option<String>,
    pub ports: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawXdp {
    pub interface: Option<String>,
    pub attach: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEtcd {
    #[serde(default)]
    pub endpoints: Vec<String>,
    pub cluster: Option<String>,
    pub name: Option<String>,
    pub ttl: Option<String>,
    pub ca_file: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
}
