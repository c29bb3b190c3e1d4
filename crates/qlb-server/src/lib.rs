//! An HTTP/3 server for backends behind a QUIC-LB load balancer: every connection ID it
//! issues routes back to it, and it can be deployed, scaled and restarted without failing a
//! request.
//!
//! * **Routable connection IDs.** A [`QuicLbCidGenerator`] writes the server ID into every
//!   CID quinn issues (handshake, Retry, NEW_CONNECTION_ID), so the load balancer keeps
//!   routing a connection to this server after the client migrates or its NAT rebinds.
//! * **Cluster keys.** The stateless-reset and token keys derive from a cluster secret, so a
//!   server that restarts under the same server ID resets connections it has no state for.
//! * **Any tower service.** Requests are `http::Request<`[`RequestBody`]`>` with streaming
//!   bodies both ways; an axum `Router` runs unchanged. Each request carries a
//!   [`ConnectionInfo`] in its extensions.
//! * **Graceful lifecycle.** [`Server::shutdown`] refuses new connections, sends the RFC 9114
//!   two-phase GOAWAY, lets in-flight requests finish, rejects later ones with
//!   H3_REQUEST_REJECTED and closes with H3_NO_ERROR. Max connection age (+-10% jitter),
//!   age grace and max idle recycle long-lived connections, as in gRPC.
//! * **GUE mode.** Behind a load balancer that encapsulates client datagrams (Generic UDP
//!   Encapsulation, its `mode = "gue"`), [`ServerBuilder::gue`] adds a socket that strips
//!   the encapsulation beneath QUIC, so connections see the clients' real addresses, with
//!   no kernel support; replies go back encapsulated through the load balancer or straight
//!   from the VIP ([`GueReturn`]). See `docs/operations.md`, "Backends in GUE mode".
//! * **0-RTT and resumption.** Session tickets are sealed under a key derived from the
//!   cluster secret and rotated ([`ServerBuilder::ticket_period`]), so every server of the
//!   cluster resumes every client; with the secret, 0-RTT is on ([`ServerBuilder::zero_rtt`]):
//!   every server accepts early data on those tickets (rustls patched to allow it on
//!   stateless tickets, `vendor/README.md`). Early requests are served only if safe to replay
//!   (GET, HEAD, OPTIONS, [`ServerBuilder::replay_safe`]), the others get `425 Too Early` or
//!   wait for the handshake ([`EarlyDataPolicy`]), and requests carry an [`EarlyData`]
//!   marker. See `docs/operations.md`, "0-RTT and replay".
//! * **Metrics** for Prometheus: [`Metrics`].
//!
//! Serving an axum `Router`, with the built-in routes, until Ctrl-C:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use axum::{Extension, Router, routing::get};
//! use qlb_server::{ConnectionInfo, Server, builtin_routes};
//! use quic_lb::{Config, ConfigId, Key};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     // The load balancer's configuration and this server's ID in it.
//!     let config = Config::new(ConfigId::new(0)?, 2, 6, Some("8f95f09245765f80256934e50c66207f".parse::<Key>()?))?;
//!     let server = Server::builder(config, "0a01".parse()?)
//!         .name("backend-a")
//!         .cluster_secret(b"the cluster's shared secret")
//!         .max_connection_age(Duration::from_secs(600))
//!         .bind("[::]:4433".parse()?)?;
//!
//!     let app = Router::new()
//!         .route("/", get(|Extension(info): Extension<ConnectionInfo>| async move {
//!             format!("hello {} from {}\n", info.peer, info.server_name)
//!         }))
//!         .merge(builtin_routes(server.drain_state()));
//!
//!     let serving = tokio::spawn({
//!         let server = server.clone();
//!         async move { server.serve(app).await }
//!     });
//!     tokio::signal::ctrl_c().await?;
//!     server.shutdown(Duration::from_secs(30)).await;
//!     serving.await?;
//!     Ok(())
//! }
//! ```
//!
//! Known limits: quinn issues at most 7 spare CIDs at a time (it keeps 8 per connection and
//! replaces each one the client retires), which is enough for several migrations. Rejected
//! requests after the final GOAWAY stay in h3's table of open streams until the connection
//! closes (h3 0.0.8 only forgets streams it handed out as requests).

mod body;
mod builder;
mod cid_generator;
mod connection;
mod drain;
mod early;
mod error;
mod goaway;
mod gue;
mod info;
mod keys;
mod lifecycle;
mod load;
mod metrics;
mod migration;
mod recent_cids;
mod request;
mod routes;
mod server;
mod service;
mod stamp;
mod tickets;
mod tls;

pub use body::{BodyError, RequestBody};
pub use builder::ServerBuilder;
pub use cid_generator::QuicLbCidGenerator;
pub use drain::DrainState;
pub use early::{EarlyData, EarlyDataPolicy};
pub use error::{BuildError, TlsError};
pub use gue::{GueReturn, GueSource, GueSourceError};
pub use info::ConnectionInfo;
pub use load::LOAD_HEADER;
pub use metrics::Metrics;
pub use routes::builtin_routes;
pub use server::Server;
pub use service::{BoxError, HttpService, ResponseBody};
pub use stamp::SERVER_ID_HEADER;
pub use tls::{ALPN_H3, Identity};
