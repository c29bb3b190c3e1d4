//! Why a migration step failed.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use thiserror::Error;

use crate::error::quic::QuicError;

/// Why a migration step failed. After any of them the connection still uses the path it
/// used before the step, unless the error is [`MigrationError::ConnectionClosed`].
///
/// ```
/// use qlb_client::MigrationError;
/// use std::time::Duration;
///
/// let err = MigrationError::ProbeTimedOut(Duration::from_millis(500));
/// assert_eq!(err.to_string(), "no answer to the path probe within 500ms");
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The peer sent the `disable_active_migration` transport parameter, so the connection
    /// must not move. Not returned yet: quinn 0.11 does not expose the peer's transport
    /// parameters (see [`Path::switch`](crate::Path::switch)).
    #[error("the peer disabled active migration")]
    ActiveMigrationDisabled,
    /// [`Path::switch`](crate::Path::switch) before a successful
    /// [`Path::probe`](crate::Path::probe) of the path.
    #[error("switch to a path that was not probed")]
    NotProbed,
    /// No answer to the path probe in time; the path is closed.
    #[error("no answer to the path probe within {0:?}")]
    ProbeTimedOut(Duration),
    /// The path was closed: by a failed probe or switch, or because the connection switched
    /// away from it.
    #[error("the path is closed")]
    PathClosed,
    /// No traffic from the peer arrived on the new path in time: the connection went back to
    /// the path it used before, and is alive. The path is closed.
    #[error("the switch was not confirmed within {0:?}; rolled back to the previous path")]
    SwitchNotConfirmed(Duration),
    /// The connection is closed (or was dropped, which closes it).
    #[error("the connection is closed: {0}")]
    ConnectionClosed(QuicError),
    /// Paths are added once the connection is established.
    #[error("the connection is not established yet")]
    NotConnected,
    /// [`Path::switch`](crate::Path::switch) waited its confirmation window and the
    /// handshake is still not confirmed (a resumed connection whose handshake stalls while it
    /// sends early data, say): a connection must not migrate before (RFC 9000 section 9).
    /// The connection stays where it was; try again once
    /// [`Connection::is_handshake_confirmed`](crate::Connection::is_handshake_confirmed).
    #[error("the handshake is not confirmed yet: the connection cannot move before it is")]
    HandshakeNotConfirmed,
    /// The path's socket cannot reach the peer's address family.
    #[error("a path from {local} cannot reach the peer at {peer}: other address family")]
    AddressFamily {
        /// The path's local address.
        local: SocketAddr,
        /// The peer's address.
        peer: SocketAddr,
    },
    /// A socket operation failed.
    #[error("socket: {0}")]
    Io(#[from] io::Error),
}
