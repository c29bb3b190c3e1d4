//! A minimal HTTP/3 client over h3 + h3-quinn, for driving the server in tests.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{Request, StatusCode};
use quinn::crypto::rustls::QuicClientConfig;
use rustls::pki_types::CertificateDer;

use super::TestResult;

/// One client connection with its own endpoint (so it can be rebound to migrate).
pub struct H3Client {
    pub endpoint: quinn::Endpoint,
    pub quic: quinn::Connection,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    driver: tokio::task::JoinHandle<()>,
}

/// A response: status and the whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> TestResult<serde_json::Value> {
        Ok(serde_json::from_slice(&self.body)?)
    }
}

/// A client configuration trusting `certificate`, ALPN h3, QUIC idle timeout `idle`.
pub fn client_config(
    certificate: &CertificateDer<'static>,
    idle: Duration,
) -> TestResult<quinn::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certificate.clone())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let mut config = quinn::ClientConfig::new(Arc::new(QuicClientConfig::try_from(tls)?));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(idle.try_into()?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

impl H3Client {
    pub async fn connect(
        addr: SocketAddr,
        certificate: &CertificateDer<'static>,
    ) -> TestResult<Self> {
        Self::connect_with(addr, client_config(certificate, Duration::from_secs(10))?).await
    }

    pub async fn connect_with(addr: SocketAddr, config: quinn::ClientConfig) -> TestResult<Self> {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(config);
        let quic = endpoint.connect(addr, "localhost")?.await?;
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

    pub async fn get(&mut self, path: &str) -> TestResult<Reply> {
        self.request("GET", path, Vec::new()).await
    }

    /// Sends `method path` with a body of `chunks` (each a separate DATA frame).
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        chunks: Vec<Bytes>,
    ) -> TestResult<Reply> {
        fetch(&mut self.send, method, path, chunks).await
    }

    /// Sends `GET path` from a task, so that the test can act while it is in flight.
    pub fn spawn_get(&self, path: &str) -> tokio::task::JoinHandle<TestResult<Reply>> {
        let mut send = self.send.clone();
        let path = path.to_string();
        tokio::spawn(async move { fetch(&mut send, "GET", &path, Vec::new()).await })
    }

    /// Another handle for sending requests on this connection.
    pub fn sender(&self) -> h3::client::SendRequest<h3_quinn::OpenStreams, Bytes> {
        self.send.clone()
    }

    /// Moves the client to a new local port: the server sees a NAT rebinding.
    pub fn rebind(&self) -> TestResult {
        self.endpoint
            .rebind(std::net::UdpSocket::bind("127.0.0.1:0")?)?;
        Ok(())
    }

    /// Waits for the connection to close; returns quinn's reason.
    pub async fn closed(&self) -> quinn::ConnectionError {
        self.quic.closed().await
    }
}

async fn fetch(
    send: &mut h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
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
    stream.finish().await?;
    let response = stream.recv_response().await?;
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await? {
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    Ok(Reply {
        status: response.status(),
        body: body.into(),
    })
}

impl Drop for H3Client {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// Whether `error` is a close by the peer with application error code `code`.
pub fn closed_with(error: &quinn::ConnectionError, code: u32) -> bool {
    matches!(error, quinn::ConnectionError::ApplicationClosed(close) if close.error_code == quinn::VarInt::from_u32(code))
}
