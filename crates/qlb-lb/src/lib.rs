//! The qlb load balancer daemon's parts:
//!
//! * [`config`]: the TOML file that `qlb lb` runs from and that `qlb serve` backends read
//!   their QUIC-LB tables and cluster secret from, validated, and the routing
//!   [`Pool`](qlb_router::Pool) it describes;
//! * [`dataplane`]: the forwarding data plane in `proxy` mode: worker threads on
//!   SO_REUSEPORT sockets with batched I/O (GRO, GSO, ECN) that route client datagrams with
//!   [`qlb_router`] and relay them through per-flow upstream sockets, with a handle to swap the
//!   pool and read the counters;
//! * [`health`]: active HTTP/3 health checks and the threshold logic that turns their results
//!   into up and down;
//! * [`daemon`]: the [`Balancer`], which runs all of it from a configuration: health checks,
//!   admin drains and reloads swap the data plane's pool without losing a flow;
//! * [`admin`]: the admin HTTP API (status, drain, reload, Prometheus metrics) the balancer
//!   serves on `admin.listen`.
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

pub mod admin;
pub mod config;
mod control_plane;
pub mod daemon;
pub mod dataplane;
pub mod health;

pub use daemon::Balancer;
