//! The HTTP/3 test client: quinn + h3-quinn, one connection on an endpoint of its own (so
//! it can be rebound, as a NAT rebinding or a migration would), with the requests tests make.

use std::future::poll_fn;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, StatusCode};
use rustls::pki_types::CertificateDer;

use crate::{SelfSigned, TestResult, within};

/// The longest a handshake may take on a loaded machine.
const HANDSHAKE: Duration = Duration::from_secs(20);

/// The idle timeout of [`H3Client::connect`]'s configuration.
const IDLE: Duration = Duration::from_secs(10);

/// The longest one request may take: longer than any test holds one on purpose.
const REQUEST: Duration = Duration::from_secs(30);

/// h3's handle for sending requests on one connection.
pub type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

/// A transport configuration with QUIC idle timeout `idle` and, if given, a keep-alive PING
/// that often.
pub fn transport(
    idle: Duration,
    keep_alive: Option<Duration>,
) -> TestResult<Arc<quinn::TransportConfig>> {
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(idle.try_into()?));
    transport.keep_alive_interval(keep_alive);
    Ok(Arc::new(transport))
}

/// One client connection with its own endpoint.
pub struct H3Client {
    /// The client's endpoint, which carries only this connection.
    pub endpoint: quinn::Endpoint,
    /// The QUIC connection.
    pub quic: quinn::Connection,
    send: SendRequest,
    driver: tokio::task::JoinHandle<()>,
}

/// A response: its status and its whole body.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The body.
    pub body: Bytes,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> TestResult<serde_json::Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// The loopback address of `addr`'s family.
fn loopback_like(addr: SocketAddr) -> IpAddr {
    match addr {
        SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
        SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
    }
}

impl H3Client {
    /// Connects to `addr` (server name `localhost`) trusting `certificate`.
    pub async fn connect(
        addr: SocketAddr,
        certificate: &CertificateDer<'static>,
    ) -> TestResult<Self> {
        Self::connect_with(addr, SelfSigned::client_config_for(certificate, IDLE)?).await
    }

    /// Connects to `addr` (server name `localhost`) with `config`, from a fresh endpoint on
    /// the loopback address of `addr`'s family.
    pub async fn connect_with(addr: SocketAddr, config: quinn::ClientConfig) -> TestResult<Self> {
        Self::connect_from(SocketAddr::new(loopback_like(addr), 0), addr, config).await
    }

    /// Connects to `addr` (server name `localhost`) with `config`, from a fresh endpoint
    /// bound to `local`: for a client in a network namespace, where loopback reaches nothing.
    pub async fn connect_from(
        local: SocketAddr,
        addr: SocketAddr,
        config: quinn::ClientConfig,
    ) -> TestResult<Self> {
        let mut endpoint = quinn::Endpoint::client(local)?;
        endpoint.set_default_client_config(config);
        let quic = tokio::time::timeout(HANDSHAKE, endpoint.connect(addr, "localhost")?)
            .await
            .map_err(|_| format!("no handshake with {addr} within {HANDSHAKE:?}"))??;
        let (mut driver, send) = h3::client::builder()
            .build::<_, _, Bytes>(h3_quinn::Connection::new(quic.clone()))
            .await?;
        let driver = tokio::spawn(async move {
            let _closed = poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Self {
            endpoint,
            quic,
            send,
            driver,
        })
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> TestResult<Reply> {
        fetch(&mut self.send, "GET", path, Vec::new()).await
    }

    /// Sends `method path` with a body of `chunks` (each a DATA frame of its own).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        chunks: Vec<Bytes>,
    ) -> TestResult<Reply> {
        fetch(&mut self.send, method, path, chunks).await
    }

    /// `GET /whoami`, which must answer 200, as JSON.
    pub async fn whoami(&mut self) -> TestResult<serde_json::Value> {
        let reply = self.get("/whoami").await?;
        if reply.status != StatusCode::OK {
            return Err(format!("/whoami: {}", reply.status).into());
        }
        reply.json()
    }

    /// The name of the backend this connection reaches (its `/whoami` name).
    pub async fn backend(&mut self) -> TestResult<String> {
        Ok(self.whoami().await?["name"]
            .as_str()
            .ok_or("no name in /whoami")?
            .to_owned())
    }

    /// Sends `GET path` from a task, so that the test can act while it is in flight.
    pub fn spawn_get(&self, path: &str) -> tokio::task::JoinHandle<TestResult<Reply>> {
        let mut send = self.send.clone();
        let path = path.to_owned();
        tokio::spawn(async move { fetch(&mut send, "GET", &path, Vec::new()).await })
    }

    /// Another handle for sending requests on this connection.
    pub fn sender(&self) -> SendRequest {
        self.send.clone()
    }

    /// Moves the client to a new local port: the server sees a NAT rebinding, and quinn
    /// switches to the next connection ID the server issued.
    pub fn rebind(&self) -> TestResult {
        let ip = self.endpoint.local_addr()?.ip();
        self.endpoint
            .rebind(std::net::UdpSocket::bind(SocketAddr::new(ip, 0))?)?;
        Ok(())
    }

    /// Waits for the connection to close; returns quinn's reason.
    pub async fn closed(&self) -> quinn::ConnectionError {
        self.quic.closed().await
    }
}

impl Drop for H3Client {
    fn drop(&mut self) {
        self.quic.close(0u32.into(), b"done");
        self.driver.abort();
    }
}

/// Sends `method path` on `send` with a body of `chunks`: the status and the whole body,
/// within 30 s.
pub async fn fetch(
    send: &mut SendRequest,
    method: &str,
    path: &str,
    chunks: Vec<Bytes>,
) -> TestResult<Reply> {
    let what = format!("{method} {path}");
    within(REQUEST, &what, exchange(send, method, path, chunks)).await?
}

async fn exchange(
    send: &mut SendRequest,
    method: &str,
    path: &str,
    chunks: Vec<Bytes>,
) -> TestResult<Reply> {
    let request = Request::builder()
        .method(method)
        .uri(format!("https://localhost{path}"))
        .body(())?;
    let mut stream = send.send_request(request).await?;
    for chunk in chunks {
        stream.send_data(chunk).await?;
    }
    // A server may answer and stop reading before the end of the request reaches it (after
    // a migration, say); the answer still counts (RFC 9114 section 4.1.2), so it decides.
    let finished = stream.finish().await;
    let response = match stream.recv_response().await {
        Ok(response) => response,
        Err(error) => return Err(finished.err().map_or(error.into(), Into::into)),
    };
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await? {
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    Ok(Reply {
        status: response.status(),
        body: body.into(),
    })
}

/// Whether `error` is a close by the peer with application error code `code`.
pub fn closed_with(error: &quinn::ConnectionError, code: u32) -> bool {
    matches!(error, quinn::ConnectionError::ApplicationClosed(close) if close.error_code == quinn::VarInt::from_u32(code))
}
