//! Why a probe failed ([`ProbeFailure`]), and why a prober could not be made
//! ([`ProberBuildError`]).

use std::time::Duration;

use thiserror::Error;

use crate::error::http3::Http3Error;
use crate::error::quic::{ConnectStartError, QuicError};
use crate::tls::TlsError;

/// Why a probe failed. Any of these counts as a failed health check.
///
/// ```
/// use qlb_client::{ProbeFailure, Prober, Trust};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let prober = Prober::new(&Trust::Insecure)?;
/// // Nothing listens on this port: the handshake cannot finish in time.
/// let result = prober
///     .probe("127.0.0.1:9".parse()?, "localhost", "/healthz", Duration::from_millis(200))
///     .await;
/// assert!(matches!(result, Err(ProbeFailure::Timeout(_))));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProbeFailure {
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The connection could not be started (a bad server name, say).
    #[error("connect: {0}")]
    Connect(#[source] ConnectStartError),
    /// The QUIC handshake or connection failed.
    #[error("QUIC: {0}")]
    Connection(#[source] QuicError),
    /// The HTTP/3 connection failed.
    #[error("HTTP/3: {0}")]
    Http3(#[source] Http3Error),
    /// The HTTP/3 request failed.
    #[error("HTTP/3 request: {0}")]
    Request(#[source] Http3Error),
    /// The request could not be formed from the server name and path.
    #[error("request: {0}")]
    Uri(#[from] http::Error),
}

/// Why a [`Prober`](crate::Prober) could not be made.
///
/// ```
/// let err: qlb_client::ProberBuildError = std::io::Error::other("no socket").into();
/// assert!(err.to_string().starts_with("local socket"));
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProberBuildError {
    /// The TLS configuration was refused.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The local UDP socket could not be opened.
    #[error("local socket: {0}")]
    Socket(#[from] std::io::Error),
}
