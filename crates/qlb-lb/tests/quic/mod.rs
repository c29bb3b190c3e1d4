//! Real QUIC on loopback for the control-plane tests: qlb-server HTTP/3 backends, an h3
//! client (quinn + h3-quinn) that goes through the load balancer, a [`Balancer`] run from a
//! file, and a plain HTTP/1.1 client for the admin API. Each test binary uses a subset.
#![allow(dead_code)]

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::{Buf, Bytes};
use qlb_lb::Balancer;
use qlb_lb::config::LbConfig;
use qlb_server::{Server, builtin_routes};
use quic_lb::{Config, ConfigId, Key, ServerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The longest a test waits for something that should happen soon (health checks, pools).
pub const WAIT: Duration = Duration::from_secs(20);

/// Logs to the test output when RUST_LOG is set.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The keys of codepoints 0 and 1.
const KEYS: [&str; 2] = [
    "8f95f09245765f80256934e50c66207f",
    "0123456789abcdef0123456789abcdef",
];

/// The four-pass QUIC-LB configuration at codepoint `id` (0 or 1): 2-octet server IDs,
/// 6-octet nonces, so both give 9-octet CIDs (a server can rotate between them).
pub fn quic_lb_config(id: u8) -> Config {
    let key: Key = KEYS[usize::from(id)].parse().expect("hex key");
    Config::new(ConfigId::new(id).expect("codepoint"), 2, 6, Some(key)).expect("valid")
}

/// The `[[quic_lb]]` table of [`quic_lb_config`]`(id)`.
pub fn quic_lb_table(id: u8) -> String {
    format!(
        "[[quic_lb]]\nconfig_id = {id}\nserver_id_len = 2\nnonce_len = 6\nkey = \"{}\"\n",
        KEYS[usize::from(id)]
    )
}

/// A qlb-server backend with the built-in routes, on loopback.
pub struct Backend {
    pub name: String,
    pub server_id: ServerId,
    pub addr: SocketAddr,
    pub server: Server,
    serving: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Backend `name` with server ID `server_id` (hex), issuing CIDs under codepoint
    /// `config_id`, on a free loopback port.
    pub fn start(name: &str, server_id: &str, config_id: u8) -> TestResult<Self> {
        Self::start_at(name, server_id, config_id, "127.0.0.1:0".parse()?)
    }

    /// The same on `addr`.
    pub fn start_at(
        name: &str,
        server_id: &str,
        config_id: u8,
        addr: SocketAddr,
    ) -> TestResult<Self> {
        init_tracing();
        let server_id: ServerId = server_id.parse()?;
        let server = Server::builder(quic_lb_config(config_id), server_id)
            .name(name)
            .cluster_secret(b"the test cluster's shared secret")
            .bind(addr)?;
        let addr = server.local_addr()?;
        let serving = tokio::spawn({
            let server = server.clone();
            async move { server.serve(builtin_routes(server.drain_state())).await }
        });
        Ok(Self {
            name: name.to_owned(),
            server_id,
            addr,
            server,
            serving,
        })
    }

    /// The `[[backend]]` table for this backend.
    pub fn table(&self) -> String {
        format!(
            "[[backend]]\nname = \"{}\"\naddr = \"{}\"\nserver_id = \"{}\"\n",
            self.name, self.addr, self.server_id
        )
    }

    /// Stops at once (connections closed) and frees its port.
    pub async fn kill(self) {
        self.server.shutdown(Duration::ZERO).await;
        self.serving.await.ok();
    }

    /// Kills it and starts it again on the same address, retrying while the port is still
    /// being released.
    pub async fn restart(self, config_id: u8) -> TestResult<Self> {
        let (name, server_id, addr) = (self.name.clone(), self.server_id.to_string(), self.addr);
        self.kill().await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match Self::start_at(&name, &server_id, config_id, addr) {
                Ok(backend) => return Ok(backend),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => return Err(err),
            }
        }
    }
}

/// A load balancer configuration file in a temporary directory.
pub struct LbFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl LbFile {
    pub fn new(text: &str) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("lb.toml");
        std::fs::write(&path, text)?;
        Ok(Self { _dir: dir, path })
    }

    /// Replaces the file's contents.
    pub fn write(&self, text: &str) -> TestResult {
        std::fs::write(&self.path, text)?;
        Ok(())
    }

    /// Writes `name` next to the configuration file.
    pub fn write_beside(&self, name: &str, text: &str) -> TestResult {
        let dir = self.path.parent().ok_or("no directory")?;
        std::fs::write(dir.join(name), text)?;
        Ok(())
    }

    /// Starts a balancer from the file.
    pub async fn start(&self) -> TestResult<Balancer> {
        let config = LbConfig::from_file(&self.path)?;
        Ok(Balancer::start(config, Some(self.path.clone())).await?)
    }
}

/// Backends `b1`..`bN` (server IDs `0001`.., codepoint 0) behind a balancer run from a file
/// that lists them all, followed by `rest`.
pub struct Setup<const N: usize> {
    pub backends: [Backend; N],
    pub file: LbFile,
    pub balancer: Balancer,
    /// The load balancer's address.
    pub lb: SocketAddr,
}

pub async fn setup<const N: usize>(rest: &str) -> TestResult<Setup<N>> {
    let backends = (1..=N)
        .map(|n| Backend::start(&format!("b{n}"), &format!("{n:04x}"), 0))
        .collect::<TestResult<Vec<_>>>()?;
    let backends: [Backend; N] = backends.try_into().map_err(|_| "backend count")?;
    let file = LbFile::new(&lb_toml(&[0], &backends.each_ref(), rest))?;
    let balancer = file.start().await?;
    let lb = balancer.listen_addrs()[0];
    Ok(Setup {
        backends,
        file,
        balancer,
        lb,
    })
}

/// [`setup`] with health checks in `rest`, once every backend is up.
pub async fn setup_up<const N: usize>(rest: &str) -> TestResult<Setup<N>> {
    let setup = setup(rest).await?;
    all_up(&setup.balancer).await?;
    Ok(setup)
}

/// A configuration: one worker on a free loopback port, `quic_lb` tables for codepoints
/// `codepoints`, `backends`, then `rest` (tables such as `[health]` or `[admin]`).
pub fn lb_toml(codepoints: &[u8], backends: &[&Backend], rest: &str) -> String {
    let mut text = String::from("listen = [\"127.0.0.1:0\"]\nworkers = 1\n");
    for &id in codepoints {
        text.push_str(&quic_lb_table(id));
    }
    for backend in backends {
        text.push_str(&backend.table());
    }
    text.push_str(rest);
    text
}

/// Fast health checks for tests, generous enough for a loaded machine (a live backend that
/// fails three checks in a row, falsely, would be taken down and its connections reset).
pub const FAST_HEALTH: &str = "[health]\ninterval = \"500ms\"\ntimeout = \"500ms\"\n\
                               healthy_threshold = 2\nunhealthy_threshold = 3\n";

/// No health checks.
pub const NO_HEALTH: &str = "[health]\nenabled = false\n";

/// Waits until `condition` holds, checking every 50 ms; fails naming `what` after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut condition: F) -> TestResult
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        if tokio::time::Instant::now() > deadline {
            return Err(format!("timed out waiting: {what}").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// The status of backend `name` as JSON.
pub async fn backend_status(balancer: &Balancer, name: &str) -> serde_json::Value {
    let status = serde_json::to_value(balancer.status().await).expect("serializes");
    status["backends"]
        .as_array()
        .and_then(|backends| backends.iter().find(|b| b["name"] == name).cloned())
        .unwrap_or_default()
}

/// Waits until every backend's health is `up`.
pub async fn all_up(balancer: &Balancer) -> TestResult {
    eventually("every backend up", || async {
        balancer.status().await.backends.iter().all(|b| {
            b.health
                .as_ref()
                .is_some_and(|h| h.state == qlb_lb::daemon::Health::Up)
        })
    })
    .await
}

/// One HTTP/3 client connection with its own endpoint (so it can be rebound to migrate).
pub struct H3Client {
    pub endpoint: quinn::Endpoint,
    pub quic: quinn::Connection,
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    driver: tokio::task::JoinHandle<()>,
}

impl H3Client {
    /// Connects to `addr` (a load balancer), accepting any certificate.
    pub async fn connect(addr: SocketAddr) -> TestResult<Self> {
        let mut config = qlb_client::Trust::Insecure.client_config()?;
        let mut transport = quinn::TransportConfig::default();
        transport.max_idle_timeout(Some(Duration::from_secs(30).try_into()?));
        transport.keep_alive_interval(Some(Duration::from_secs(1)));
        config.transport_config(std::sync::Arc::new(transport));
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(config);
        let quic = tokio::time::timeout(WAIT, endpoint.connect(addr, "localhost")?).await??;
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

    /// `GET path`: the status and the whole body, within [`WAIT`].
    pub async fn get(&mut self, path: &str) -> TestResult<(http::StatusCode, Bytes)> {
        tokio::time::timeout(WAIT, get(&mut self.send, path)).await?
    }

    /// `GET /whoami`, as JSON.
    pub async fn whoami(&mut self) -> TestResult<serde_json::Value> {
        let (status, body) = self.get("/whoami").await?;
        if status != http::StatusCode::OK {
            return Err(format!("/whoami: {status}").into());
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// The name of the backend this connection reaches.
    pub async fn backend(&mut self) -> TestResult<String> {
        Ok(self.whoami().await?["name"]
            .as_str()
            .ok_or("no name")?
            .to_owned())
    }

    /// Another handle for requests on this connection.
    pub fn sender(&self) -> h3::client::SendRequest<h3_quinn::OpenStreams, Bytes> {
        self.send.clone()
    }

    /// Moves the client to a new local port, as a NAT rebinding would: quinn switches to the
    /// next connection ID the server issued.
    pub fn rebind(&self) -> TestResult {
        self.endpoint
            .rebind(std::net::UdpSocket::bind("127.0.0.1:0")?)?;
        Ok(())
    }
}

impl Drop for H3Client {
    fn drop(&mut self) {
        self.quic.close(0u32.into(), b"done");
        self.driver.abort();
    }
}

/// `GET path` on `send`: the status and the whole body.
pub async fn get(
    send: &mut h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    path: &str,
) -> TestResult<(http::StatusCode, Bytes)> {
    let request = http::Request::get(format!("https://localhost{path}")).body(())?;
    let mut stream = send.send_request(request).await?;
    // A server may answer and stop reading before our end of stream reaches it (after a
    // migration, say); the answer still counts (RFC 9114 section 4.1.2), so it decides.
    let _ = stream.finish().await;
    let status = stream.recv_response().await?.status();
    let mut body = Vec::new();
    while let Some(mut chunk) = stream.recv_data().await? {
        body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
    }
    Ok((status, body.into()))
}

/// The backend each of `count` fresh connections to `lb` reaches.
pub async fn new_connections_reach(lb: SocketAddr, count: usize) -> TestResult<Vec<String>> {
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        names.push(H3Client::connect(lb).await?.backend().await?);
    }
    Ok(names)
}

/// A fresh connection to `lb` that reaches backend `name`: connections are opened until one
/// does (at most 64; each reaches a backend by a hash of a random connection ID).
pub async fn connection_to(lb: SocketAddr, name: &str) -> TestResult<H3Client> {
    for _ in 0..64 {
        let mut client = H3Client::connect(lb).await?;
        if client.backend().await? == name {
            return Ok(client);
        }
    }
    Err(format!("no new connection reached {name}").into())
}

/// An HTTP/1.1 response from the admin API.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> TestResult<serde_json::Value> {
        Ok(serde_json::from_str(&self.body)?)
    }
}

/// `method path` to the admin API at `addr`, with `token` as bearer token.
pub async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> TestResult<Reply> {
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Length: 0\r\n{authorization}\r\n"
    );
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(WAIT, exchange).await??;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no header end")?;
    let (status_line, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let status = status_line
        .split_whitespace()
        .nth(1)
        .ok_or("no status")?
        .parse()?;
    Ok(Reply {
        status,
        headers: headers.to_owned(),
        body: body.to_owned(),
    })
}
