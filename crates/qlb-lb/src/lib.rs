//! The qlb load balancer daemon. Its public parts are what `qlb lb`, `qlb serve`, the
//! benchmarks and the tests use:
//!
//! * [`config`]: the TOML file, validated: the part every member of a cluster shares
//!   ([`ClusterConfig`](config::ClusterConfig), which `qlb serve` backends read) and the load
//!   balancer's whole file ([`LbConfig`](config::LbConfig), which `qlb lb` runs from), and the
//!   routing [`Pool`](qlb_router::Pool) it describes;
//! * [`dataplane`]: the forwarding data plane, on plain options: worker threads on
//!   SO_REUSEPORT sockets with batched I/O (GRO, GSO, ECN) that route client datagrams with
//!   [`qlb_router`] and relay them through per-flow upstream sockets (`proxy` mode) or
//!   encapsulate them in GUE without per-client state (`gue` mode), with a handle to swap the
//!   pool and read the counters;
//! * [`daemon`]: the [`Balancer`], which runs all of it from a configuration: active HTTP/3
//!   health checks, admin drains and reloads swap the data plane's pool without losing a flow;
//!   and what it reports ([`Status`](daemon::Status));
//! * [`admin`]: the admin HTTP API (status, drain, reload, Prometheus metrics) the balancer
//!   serves on `admin.listen`, and the metrics encoding.
//!
//! Inside, modules import downwards only: `config` and `dataplane` at the bottom, the health
//! checks on `config`, the control plane's state and operations on those, `admin` on the
//! control plane, and `daemon` on everything.
//!
//! ```
//! use qlb_lb::config::LbConfig;
//!
//! let config = LbConfig::from_toml(r#"
//!     listen = ["127.0.0.1:4433"]
//!
//!     [[quic_lb]]
//!     config_id = 0
//!     server_id_len = 2
//!     nonce_len = 6
//!
//!     [[backend]]
//!     name = "b1"
//!     addr = "127.0.0.1:5001"
//!     server_id = "0001"
//! "#, ".".as_ref())?;
//! assert_eq!(config.backends[0].name, "b1");
//! # Ok::<(), qlb_lb::config::ConfigError>(())
//! ```

#![warn(unreachable_pub)]

pub mod admin;
pub mod config;
mod control_plane;
pub mod daemon;
pub mod dataplane;
mod follower;
mod health;
mod sync;

pub use daemon::Balancer;
