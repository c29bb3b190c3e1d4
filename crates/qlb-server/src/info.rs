//! What a handler may want to know about the connection a request came on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quic_lb::ServerId;

/// Per-request facts about the connection, in the request's extensions.
///
/// `peer` is the client's address when the request arrived: after a migration or NAT
/// rebinding it differs from the address the connection started on.
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use qlb_server::ConnectionInfo;
///
/// let app: Router = Router::new().route(
///     "/peer",
///     get(|Extension(info): Extension<ConnectionInfo>| async move { info.peer.to_string() }),
/// );
/// ```
#[derive(Clone, Debug)]
pub struct ConnectionInfo {
    /// This server's QUIC-LB server ID.
    pub server_id: ServerId,
    /// This server's name.
    pub server_name: Arc<str>,
    /// The client's address as this server sees it, read when the request arrived.
    pub peer: SocketAddr,
    /// When the connection was established.
    pub connected_at: Instant,
    /// 1 for the first request on the connection, 2 for the second, ...
    pub request_ordinal: u64,
}

impl ConnectionInfo {
    /// How long the connection has been established.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// use qlb_server::ConnectionInfo;
    ///
    /// let info = ConnectionInfo {
    ///     server_id: "01".parse()?,
    ///     server_name: "a".into(),
    ///     peer: "127.0.0.1:4433".parse()?,
    ///     connected_at: Instant::now() - Duration::from_secs(2),
    ///     request_ordinal: 1,
    /// };
    /// assert!(info.age() >= Duration::from_secs(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn age(&self) -> Duration {
        self.connected_at.elapsed()
    }
}
