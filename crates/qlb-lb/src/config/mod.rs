//! The configuration file, validated: the part every member of a cluster shares
//! ([`ClusterConfig`]: `[[quic_lb]]` tables, cluster secret), which `qlb serve` backends
//! read, and the load balancer's whole file ([`LbConfig`]: that part and its own listeners,
//! backends, health checks and admin API), which `qlb lb` runs from.
//!
//! Every refusal names the field at fault (`backend[1].server_id: ...`), and nothing is
//! half-loaded: a file either yields a whole configuration or an error, so a bad reload can
//! keep the running configuration. Relative file paths (`cluster_secret_file`, `key_file`,
//! `token_file`) are resolved against the directory of the configuration file.
//! `docs/config.md` documents every field.

mod duration;
mod error;
mod load;
mod members;
mod pool;
mod raw;
mod schema;
mod secret;
mod validation;

pub use duration::parse_duration;
pub use error::ConfigError;
pub use members::LeftOut;
pub use schema::{
    AdminConfig, BackendConfig, ClusterConfig, EtcdConfig, ForwardingMode, GueConfig, HealthConfig,
    InterfaceName, LbConfig, RetryConfig, RetryMode, XdpAttach, XdpConfig,
};
pub use secret::Secret;
