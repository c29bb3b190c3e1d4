//! The HTTP/3 client side of qlb: a client that balances its requests over a pool of backends
//! itself, explicit connection migration, and the health prober the load balancer runs.
//!
//! * **[`Client`]** over a [`Target`]: one `host:port`, a list, a [`BackendList`] the
//!   application updates, or `dns://name:port` (every A and AAAA record, polled; optional
//!   rendezvous subsetting). A picker ([`PickerKind`]: round robin, random, least-loaded,
//!   power of two choices, peak EWMA; ring hash and Maglev by a per-request key
//!   ([`HashKey`], [`HashPolicy`]) with bounded loads; weighted round robin from the
//!   backends' load reports ([`WrrSettings`]); aperture ([`ApertureSettings`])) chooses the
//!   backend of each request among the healthy ones ([`HealthCheck`]) that outlier detection
//!   has not ejected ([`OutlierDetection`]). Behind one VIP, a pool's connections can be
//!   made to reach distinct backends ([`ClientBuilder::distinct_backends`]). Choosing a
//!   picker: `docs/client-balancing.md`. Each backend has a pool of connections: `min_connections`,
//!   `max_lifetime` with jitter (the replacement is ready before the old connection stops
//!   taking requests, which then drains), idle timeout. After GOAWAY a connection takes no
//!   new request and is replaced; a request no server processed is retried once elsewhere
//!   (one that never left the client, its connection having read a GOAWAY, without using up
//!   that retry), nothing else is. Streaming bodies both ways, a per-request timeout, numbers per backend
//!   ([`ClientSnapshot`], Prometheus). Session resumption with 0-RTT
//!   ([`ClientBuilder::zero_rtt`], off by default): new connections resume with the tickets
//!   the client kept and send their GET, HEAD and OPTIONS requests as early data; others wait
//!   for the handshake; an early request answered `425 Too Early`, or whose early data was
//!   refused, is sent again once after the handshake.
//! * **[`Connection`]**: one connection on its own UDP endpoint, pooled or opened alone,
//!   that can move to another local socket: [`Connection::add_path`], then
//!   [`Path::probe`] and [`Path::switch`].
//! * **[`Prober`]**: one health probe (fresh handshake and `GET`), with [`Trust`] settings.
//!
//! Against a `qlb serve`-like backend on loopback:
//!
//! ```
//! use std::time::Duration;
//! use http_body_util::BodyExt;
//! use qlb_client::{Client, Trust};
//! use qlb_server::{Server, builtin_routes};
//! use quic_lb::{Config, ConfigId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let server = Server::builder(Config::new(ConfigId::new(0)?, 2, 6, None)?, "0a01".parse()?)
//!     .name("backend-a")
//!     .bind("127.0.0.1:0".parse()?)?;
//! tokio::spawn({
//!     let server = server.clone();
//!     async move { server.serve(builtin_routes(server.drain_state())).await }
//! });
//!
//! let client = Client::builder(server.local_addr()?.into(), Trust::Insecure)
//!     .server_name("localhost")
//!     .timeout(Duration::from_secs(10))
//!     .build()?;
//! let response = client.send(http::Request::get("/whoami").body(String::new())?).await?;
//! assert_eq!(response.status(), 200);
//! let whoami = response.into_body().collect().await?.to_bytes();
//! assert!(String::from_utf8_lossy(&whoami).contains("backend-a"));
//! assert_eq!(client.snapshot().requests(), 1);
//! # server.shutdown(Duration::from_secs(1)).await;
//! # Ok(())
//! # }
//! ```

#![warn(unreachable_pub)]

// Bottom up, each layer importing only those below it: `sync`, `tls`; `error`; `stats`,
// `migration`, `prober`, `discovery`; `connections`; `requests`; `balancing`; then the
// public front: `connection` (the handle), and `client` with its `builder`.
mod balancing;
mod builder;
mod client;
mod connection;
mod connections;
mod discovery;
mod error;
mod migration;
mod prober;
mod requests;
mod stats;
mod sync;
mod tls;

pub use balancing::affinity::key::{HashKey, HashPolicy};
pub use balancing::aperture::{ApertureSettings, Coordinate};
pub use balancing::health::HealthCheck;
pub use balancing::outlier::OutlierDetection;
pub use balancing::picker::{PickerKind, UnknownPicker};
pub use balancing::wrr::weight::WrrSettings;
pub use builder::ClientBuilder;
pub use client::{Client, RequestTimeout};
pub use connection::Connection;
pub use discovery::target::{BackendList, HostPort, Target, TargetError};
pub use error::http3::{Http3Error, Http3ErrorKind};
pub use error::quic::{ConnectStartError, ConnectStartErrorKind, QuicError, QuicErrorKind};
pub use error::{BoxError, BuildError, ConnectError, Error};
pub use migration::{MigrationError, Path};
pub use prober::{ProbeFailure, ProbeOutcome, Prober, ProberBuildError};
pub use requests::body::ResponseBody;
pub use requests::request::{ReplaySafe, ServedBy};
pub use stats::snapshot::{BackendSnapshot, ClientSnapshot, CloseCounts, CloseReason};
pub use tls::{ALPN_H3, TlsError, Trust};
