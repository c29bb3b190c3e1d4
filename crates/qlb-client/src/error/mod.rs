//! What can go wrong: sending a request ([`Error`]), opening a connection ([`ConnectError`]),
//! building a client ([`BuildError`]); and the QUIC and HTTP/3 errors they carry, in
//! qlb-client's own types.

pub(crate) mod http3;
pub(crate) mod quic;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::tls::TlsError;
use http3::Http3Error;
use quic::{ConnectStartError, QuicError};

/// A boxed error from a request body.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a request failed.
///
/// [`Error::is_unprocessed`] tells the errors after which no server processed the request;
/// the client already retried those once on another connection where it could.
///
/// ```
/// use qlb_client::Error;
///
/// assert!(Error::Rejected.is_unprocessed());
/// assert!(!Error::Timeout(std::time::Duration::from_secs(1)).is_unprocessed());
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The target has no backends (yet), or resolving it failed.
    #[error("no backends: {0}")]
    NoBackends(String),
    /// Health checks find every backend unhealthy.
    #[error("none of the {0} backends is healthy")]
    NoHealthyBackends(usize),
    /// The request did not complete within its timeout.
    #[error("no complete response within {0:?}")]
    Timeout(Duration),
    /// No connection could be opened to the backend.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// The backend.
        addr: SocketAddr,
        /// Why (shared by every request that waited for this connection).
        #[source]
        source: Arc<ConnectError>,
    },
    /// The connection received GOAWAY before the request was sent: not sent.
    #[error("the connection is going away (GOAWAY): request not sent")]
    GoingAway,
    /// The server refused the request with H3_REQUEST_REJECTED: not processed. Returned when
    /// the retry failed too, or the request body had already streamed and cannot be replayed.
    #[error("the server rejected the request (H3_REQUEST_REJECTED): not processed")]
    Rejected,
    /// The HTTP/3 exchange failed after the request was sent.
    #[error("HTTP/3: {0}")]
    Http3(#[source] Http3Error),
    /// The request body returned an error; the request stream was cancelled.
    #[error("request body: {0}")]
    RequestBody(#[source] BoxError),
    /// The request cannot be sent as it is (its URI, say).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl Error {
    /// An HTTP/3 stream error of the exchange.
    pub(crate) fn http3(err: h3::error::StreamError) -> Self {
        Self::Http3(Http3Error::stream(err))
    }

    /// Whether the request certainly reached no server's application, so that sending it
    /// again is safe even when it is not idempotent.
    ///
    /// ```
    /// assert!(qlb_client::Error::GoingAway.is_unprocessed());
    /// ```
    pub fn is_unprocessed(&self) -> bool {
        matches!(
            self,
            Self::NoBackends(_)
                | Self::NoHealthyBackends(_)
                | Self::Connect { .. }
                | Self::GoingAway
                | Self::Rejected
                | Self::InvalidRequest(_)
        )
    }
}

/// Why a connection could not be opened.
///
/// ```
/// let err = qlb_client::ConnectError::Timeout(std::time::Duration::from_secs(3));
/// assert_eq!(err.to_string(), "no connection within 3s");
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The local UDP socket could not be opened.
    #[error("local socket: {0}")]
    Socket(#[from] std::io::Error),
    /// The connection could not be started (a bad server name, say).
    #[error("{0}")]
    Start(#[source] ConnectStartError),
    /// The QUIC handshake failed (refused, timed out, bad certificate...).
    #[error("QUIC: {0}")]
    Quic(#[source] QuicError),
    /// HTTP/3 could not be set up on the connection.
    #[error("HTTP/3: {0}")]
    Http3(#[source] Http3Error),
    /// The handshake did not finish in time.
    #[error("no connection within {0:?}")]
    Timeout(Duration),
    /// The TLS configuration was refused.
    #[error("{0}")]
    Tls(#[from] TlsError),
}

/// Why a client could not be built: a setting (named) or the TLS material.
///
/// ```
/// use qlb_client::{Client, Trust};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let err = Client::builder("dns://backends.internal:443".parse()?, Trust::Insecure)
///     .dns_interval(Duration::from_secs(1))
///     .build()
///     .unwrap_err();
/// assert!(err.to_string().starts_with("dns_interval: "), "{err}");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// A setting is out of range.
    #[error("{field}: {problem}")]
    Field {
        /// The setting, as the builder method (or `struct.field`) names it.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The TLS configuration was refused.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The system DNS configuration could not be read.
    #[error("DNS resolver: {0}")]
    Dns(String),
}

/// The longest timer, idle time or interval a client setting may hold: a day is far beyond
/// any sensible one, and tasks add these to an `Instant`, which panics on overflow.
pub(crate) const MAX_TIMER: Duration = Duration::from_secs(24 * 3600);
/// The longest connection lifetime: a year outlasts any deploy cycle.
pub(crate) const MAX_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);

impl BuildError {
    /// The one check of every duration setting: more than zero and at most `max`.
    pub(crate) fn check_duration(
        field: &'static str,
        value: Duration,
        max: Duration,
    ) -> Result<(), Self> {
        let problem = if value.is_zero() {
            "must be more than zero".to_owned()
        } else if value > max {
            format!("{value:?} exceeds the maximum of {max:?}")
        } else {
            return Ok(());
        };
        Err(Self::Field { field, problem })
    }
}
