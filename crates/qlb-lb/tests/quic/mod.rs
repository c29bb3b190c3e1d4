//! Real QUIC on loopback for the control-plane tests: qlb-server HTTP/3 backends, the test
//! kit's h3 client through the load balancer, a [`Balancer`] run from a file, and a plain
//! HTTP/1.1 client for the admin API. Each test binary uses a subset.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use qlb_lb::Balancer;
use qlb_lb::config::LbConfig;
use qlb_server::{Server, builtin_routes};
use qlb_testkit::fixtures::{self, CLUSTER_SECRET};
use qlb_testkit::{init_tracing, transport};
use quic_lb::ServerId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use qlb_testkit::{H3Client, TestResult, eventually};

/// The longest a test waits for something that should happen soon (health checks, pools).
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A qlb-server backend with the built-in routes, on loopback.
pub(crate) struct Backend {
    pub name: String,
    pub server_id: ServerId,
    pub addr: SocketAddr,
    /// Where it receives GUE, if started with [`Backend::start_gue`].
    pub gue: Option<SocketAddr>,
    pub server: Server,
    serving: tokio::task::JoinHandle<()>,
}

impl Backend {
    /// Backend `name` with server ID `server_id` (hex), issuing CIDs under codepoint
    /// `config_id`, on a free loopback port.
    pub(crate) fn start(name: &str, server_id: &str, config_id: u8) -> TestResult<Self> {
        Self::start_at(name, server_id, config_id, "127.0.0.1:0".parse()?)
    }

    /// [`Backend::start`], also receiving GUE (answering through the load balancer) on
    /// another free port: the backend of a `mode = "gue"` balancer.
    pub(crate) fn start_gue(name: &str, server_id: &str, config_id: u8) -> TestResult<Self> {
        let gue = Some((
            "127.0.0.1:0".parse()?,
            qlb_server::GueReturn::ThroughLoadBalancer,
        ));
        Self::launch(name, server_id, config_id, "127.0.0.1:0".parse()?, gue)
    }

    /// The same on `addr`.
    pub(crate) fn start_at(
        name: &str,
        server_id: &str,
        config_id: u8,
        addr: SocketAddr,
    ) -> TestResult<Self> {
        Self::launch(name, server_id, config_id, addr, None)
    }

    fn launch(
        name: &str,
        server_id: &str,
        config_id: u8,
        addr: SocketAddr,
        gue: Option<(SocketAddr, qlb_server::GueReturn)>,
    ) -> TestResult<Self> {
        init_tracing();
        let server_id: ServerId = server_id.parse()?;
        let mut builder = Server::builder(fixtures::config(config_id), server_id)
            .name(name)
            .cluster_secret(CLUSTER_SECRET);
        if let Some((gue, way_back)) = gue {
            builder = builder.gue(gue, way_back);
        }
        let server = builder.bind(addr)?;
        let addr = server.local_addr()?;
        let serving = tokio::spawn({
            let server = server.clone();
            async move { server.serve(builtin_routes(server.drain_state())).await }
        });
        Ok(Self {
            name: name.to_owned(),
            server_id,
            addr,
            gue: server.gue_addr(),
            server,
            serving,
        })
    }

    /// The `[[backend]]` table for this backend (in GUE mode, GUE to its GUE address and
    /// health checks to its plain one).
    pub(crate) fn table(&self) -> String {
        let addr = match self.gue {
            Some(gue) => format!("addr = \"{gue}\"\nhealth_addr = \"{}\"\n", self.addr),
            None => format!("addr = \"{}\"\n", self.addr),
        };
        format!(
            "[[backend]]\nname = \"{}\"\n{addr}server_id = \"{}\"\n",
            self.name, self.server_id
        )
    }

    /// Stops at once (connections closed) and frees its port.
    pub(crate) async fn kill(self) {
        self.server.shutdown(Duration::ZERO).await;
        self.serving.await.ok();
    }

    /// Kills it and starts it again on the same address, retrying while the port is still
    /// being released.
    pub(crate) async fn restart(self, config_id: u8) -> TestResult<Self> {
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
pub(crate) struct LbFile {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl LbFile {
    pub(crate) fn new(text: &str) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("lb.toml");
        std::fs::write(&path, text)?;
        Ok(Self { _dir: dir, path })
    }

    /// Replaces the file's contents.
    pub(crate) fn write(&self, text: &str) -> TestResult {
        std::fs::write(&self.path, text)?;
        Ok(())
    }

    /// Writes `name` next to the configuration file.
    pub(crate) fn write_beside(&self, name: &str, text: &str) -> TestResult {
        let dir = self.path.parent().ok_or("no directory")?;
        std::fs::write(dir.join(name), text)?;
        Ok(())
    }

    /// Starts a balancer from the file.
    pub(crate) async fn start(&self) -> TestResult<Balancer> {
        let config = LbConfig::from_file(&self.path)?;
        Ok(Balancer::start(config, Some(self.path.clone())).await?)
    }
}

/// How the balancer under test forwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Proxy,
    Gue,
}

impl Mode {
    /// A backend for this mode: [`Backend::start`], or [`Backend::start_gue`].
    pub(crate) fn backend(self, name: &str, server_id: &str, config_id: u8) -> TestResult<Backend> {
        match self {
            Mode::Proxy => Backend::start(name, server_id, config_id),
            Mode::Gue => Backend::start_gue(name, server_id, config_id),
        }
    }

    /// What this mode adds to an [`lb_toml`] file: lines for its top, tables for its end.
    pub(crate) fn file_parts(self) -> (&'static str, &'static str) {
        match self {
            Mode::Proxy => ("", ""),
            Mode::Gue => ("mode = \"gue\"\n", "[gue]\nbind = \"127.0.0.1:0\"\n"),
        }
    }

    /// [`lb_toml`] in this mode.
    pub(crate) fn lb_toml(self, codepoints: &[u8], backends: &[&Backend], rest: &str) -> String {
        let (top, tables) = self.file_parts();
        format!(
            "{top}{}",
            lb_toml(codepoints, backends, &format!("{rest}{tables}"))
        )
    }
}

/// Backends `b1`..`bN` (server IDs `0001`.., codepoint 0) behind a balancer run from a file
/// that lists them all, followed by `rest`.
pub(crate) struct Setup<const N: usize> {
    pub backends: [Backend; N],
    pub file: LbFile,
    pub balancer: Balancer,
    /// The load balancer's address.
    pub lb: SocketAddr,
}

pub(crate) async fn setup<const N: usize>(rest: &str) -> TestResult<Setup<N>> {
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
pub(crate) async fn setup_up<const N: usize>(rest: &str) -> TestResult<Setup<N>> {
    let setup = setup(rest).await?;
    all_up(&setup.balancer).await?;
    Ok(setup)
}

/// A configuration: one worker on a free loopback port, `quic_lb` tables for codepoints
/// `codepoints`, `backends`, then `rest` (tables such as `[health]` or `[admin]`).
pub(crate) fn lb_toml(codepoints: &[u8], backends: &[&Backend], rest: &str) -> String {
    let mut text = String::from("listen = [\"127.0.0.1:0\"]\nworkers = 1\n");
    for &id in codepoints {
        text.push_str(&fixtures::table(id));
    }
    for backend in backends {
        text.push_str(&backend.table());
    }
    text.push_str(rest);
    text
}

/// Fast health checks for tests, generous enough for a loaded machine (a live backend that
/// fails three checks in a row, falsely, would be taken down and its connections reset).
pub(crate) const FAST_HEALTH: &str = "[health]\ninterval = \"500ms\"\ntimeout = \"500ms\"\n\
                               healthy_threshold = 2\nunhealthy_threshold = 3\n";

/// No health checks.
pub(crate) const NO_HEALTH: &str = "[health]\nenabled = false\n";

/// The status of backend `name` as JSON.
pub(crate) async fn backend_status(balancer: &Balancer, name: &str) -> serde_json::Value {
    let status = serde_json::to_value(balancer.status().await).expect("serializes");
    status["backends"]
        .as_array()
        .and_then(|backends| backends.iter().find(|b| b["name"] == name).cloned())
        .unwrap_or_default()
}

/// Waits until every backend's health is `up`.
pub(crate) async fn all_up(balancer: &Balancer) -> TestResult {
    eventually(WAIT, "every backend up", || async {
        balancer.status().await.backends.iter().all(|b| {
            b.health
                .as_ref()
                .is_some_and(|h| h.state == qlb_lb::daemon::Health::Up)
        })
    })
    .await
}

/// A client connection through the load balancer at `lb`: any backend's certificate is
/// accepted, and a keep-alive every second keeps its flow through the balancer alive.
pub(crate) async fn connect(lb: SocketAddr) -> TestResult<H3Client> {
    let mut config = qlb_client::Trust::Insecure.client_config()?;
    config.transport_config(transport(
        Duration::from_secs(30),
        Some(Duration::from_secs(1)),
    )?);
    H3Client::connect_with(lb, config).await
}

/// The backend each of `count` fresh connections to `lb` reaches.
pub(crate) async fn new_connections_reach(lb: SocketAddr, count: usize) -> TestResult<Vec<String>> {
    let mut names = Vec::with_capacity(count);
    for _ in 0..count {
        names.push(connect(lb).await?.backend().await?);
    }
    Ok(names)
}

/// A fresh connection to `lb` that reaches backend `name`: connections are opened until one
/// does (at most 64; each reaches a backend by a hash of a random connection ID).
pub(crate) async fn connection_to(lb: SocketAddr, name: &str) -> TestResult<H3Client> {
    for _ in 0..64 {
        let mut client = connect(lb).await?;
        if client.backend().await? == name {
            return Ok(client);
        }
    }
    Err(format!("no new connection reached {name}").into())
}

/// An HTTP/1.1 response from the admin API.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: String,
    pub body: String,
}

impl Reply {
    pub(crate) fn json(&self) -> TestResult<serde_json::Value> {
        Ok(serde_json::from_str(&self.body)?)
    }
}

/// `method path` to the admin API at `addr`, with `token` as bearer token.
pub(crate) async fn admin(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> TestResult<Reply> {
    admin_with(addr, method, path, token, &[("Host", &addr.to_string())]).await
}

/// [`admin`] with `headers` (name, value) instead of `Host: {addr}`.
pub(crate) async fn admin_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> TestResult<Reply> {
    let authorization = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\n{headers}Connection: close\r\n\
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
