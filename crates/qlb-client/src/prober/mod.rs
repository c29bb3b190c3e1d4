//! One HTTP/3 health probe: a fresh QUIC handshake and a `GET`, within a deadline.
//! The load balancer's health checker runs these; a fresh connection each time is the point,
//! since it proves the backend still accepts new connections.

mod error;

use std::future::poll_fn;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::Buf;

use crate::error::http3::Http3Error;
use crate::error::quic::{ConnectStartError, QuicError};
use crate::tls::Trust;

pub use error::{ProbeFailure, ProberBuildError};

/// HTTP/3's "no error" code (RFC 9114 section 8.1), for closing a probe's connection.
const H3_NO_ERROR: u32 = 0x100;
/// A probe reads at most this much of a response body, then stops.
const MAX_BODY: usize = 64 * 1024;

/// What a probe saw.
///
/// ```
/// use qlb_client::ProbeOutcome;
/// use std::time::Duration;
///
/// let outcome = ProbeOutcome { status: http::StatusCode::OK, elapsed: Duration::from_millis(3) };
/// assert!(outcome.is_healthy());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeOutcome {
    /// The response status.
    pub status: http::StatusCode,
    /// From the start of the handshake to the end of the response.
    pub elapsed: Duration,
}

impl ProbeOutcome {
    /// Whether the status is 2xx.
    ///
    /// ```
    /// use qlb_client::ProbeOutcome;
    ///
    /// let outcome = ProbeOutcome { status: http::StatusCode::SERVICE_UNAVAILABLE, elapsed: Default::default() };
    /// assert!(!outcome.is_healthy());
    /// ```
    pub fn is_healthy(&self) -> bool {
        self.status.is_success()
    }
}

/// Runs HTTP/3 health probes from one local UDP socket per address family.
///
/// ```no_run
/// use qlb_client::{Prober, Trust};
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let prober = Prober::new(&Trust::Insecure)?;
/// let outcome = prober
///     .probe("127.0.0.1:5001".parse()?, "localhost", "/healthz", Duration::from_millis(500))
///     .await?;
/// println!("{} in {:?}", outcome.status, outcome.elapsed);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Prober {
    client_config: quinn::ClientConfig,
    v4: quinn::Endpoint,
    /// `None` where the host has no IPv6.
    v6: Option<quinn::Endpoint>,
}

impl Prober {
    /// A prober trusting `trust`. Must be called inside a tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let prober = qlb_client::Prober::new(&qlb_client::Trust::Insecure)?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(trust: &Trust) -> Result<Self, ProberBuildError> {
        Ok(Self {
            client_config: trust.client_config()?,
            v4: quinn::Endpoint::client((Ipv4Addr::UNSPECIFIED, 0).into())?,
            v6: quinn::Endpoint::client((Ipv6Addr::UNSPECIFIED, 0).into()).ok(),
        })
    }

    /// Connects to `addr` (TLS server name `server_name`), sends `GET path` and reads the
    /// response, all within `timeout`, then closes the connection.
    ///
    /// ```no_run
    /// # use qlb_client::{Prober, Trust};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let prober = Prober::new(&Trust::Insecure)?;
    /// let healthy = prober
    ///     .probe("[::1]:5001".parse()?, "localhost", "/healthz", std::time::Duration::from_secs(1))
    ///     .await
    ///     .is_ok_and(|outcome| outcome.is_healthy());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn probe(
        &self,
        addr: SocketAddr,
        server_name: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<ProbeOutcome, ProbeFailure> {
        let started = Instant::now();
        let status = tokio::time::timeout(timeout, self.get(addr, server_name, path))
            .await
            .map_err(|_| ProbeFailure::Timeout(timeout))??;
        Ok(ProbeOutcome {
            status,
            elapsed: started.elapsed(),
        })
    }

    async fn get(
        &self,
        addr: SocketAddr,
        server_name: &str,
        path: &str,
    ) -> Result<http::StatusCode, ProbeFailure> {
        let endpoint = match (addr, &self.v6) {
            (SocketAddr::V6(_), Some(v6)) => v6,
            _ => &self.v4,
        };
        let connection = endpoint
            .connect_with(self.client_config.clone(), addr, server_name)
            .map_err(|err| ProbeFailure::Connect(ConnectStartError::new(err)))?
            .await
            .map_err(|err| ProbeFailure::Connection(QuicError::new(err)))?;
        let (mut driver, mut send_request) =
            h3::client::new(h3_quinn::Connection::new(connection.clone()))
                .await
                .map_err(|err| ProbeFailure::Http3(Http3Error::connection(err)))?;
        let request = http::Request::get(format!("https://{server_name}{path}")).body(())?;
        let request_failed = |err| ProbeFailure::Request(Http3Error::stream(err));
        let exchange = async {
            let mut stream = send_request
                .send_request(request)
                .await
                .map_err(request_failed)?;
            stream.finish().await.map_err(request_failed)?;
            let status = stream
                .recv_response()
                .await
                .map_err(request_failed)?
                .status();
            let mut read = 0;
            while read < MAX_BODY {
                match stream.recv_data().await.map_err(request_failed)? {
                    Some(chunk) => read += chunk.remaining(),
                    None => break,
                }
            }
            Ok::<_, ProbeFailure>(status)
        };
        tokio::pin!(exchange);
        let status = tokio::select! {
            status = &mut exchange => status,
            closed = poll_fn(|cx| driver.poll_close(cx)) => {
                // A server may close right after its response (a draining one does, with
                // H3_NO_ERROR): what it sent is still readable, so the exchange decides.
                exchange
                    .await
                    .map_err(|_| ProbeFailure::Http3(Http3Error::connection(closed)))
            }
        };
        connection.close(H3_NO_ERROR.into(), b"");
        status
    }
}
