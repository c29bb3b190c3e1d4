//! A cluster on loopback: `qlb serve` backends and `qlb lb` instances sharing one encrypted
//! QUIC-LB configuration and cluster secret, generated into a temporary directory; health
//! checks and the admin API (status, drain, undrain) when the [`Spec`] asks; restarts on the
//! same ports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use qlb_testkit::{Polled, SelfSigned, poll_blocking};
use serde_json::Value;

use super::TestResult;
use super::http;
use super::peers::WhoamiAnswers;
use super::process::Process;

/// How long a process may take to start (a loaded 2-core CI machine, a debug build).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Attempts at restarting a process on its old port before giving up.
const REBIND_ATTEMPTS: usize = 20;

/// What a child logs when its port is taken (by another process's ephemeral socket, say).
const PORT_TAKEN: &str = "Address already in use";

/// The QUIC-LB configuration codepoint the cluster uses.
const CONFIG_ID: u8 = 1;

/// What to start.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    /// `qlb serve` backends, named b1, b2, ... with server IDs 0001, 0002, ...
    pub backends: usize,
    /// `qlb lb` instances, each with its own listening port and otherwise the same file.
    pub lbs: usize,
    /// Data-plane threads per load balancer.
    pub workers: usize,
    /// The load balancers' health checks; `None`: off (the scenarios that count handshakes
    /// and requests on the backends would count the probes' too).
    pub health: Option<HealthChecks>,
    /// Whether the load balancers serve their admin API (on a port of their choosing).
    pub admin: bool,
    /// The body of the load balancers' `[retry]` table, if any.
    pub retry: Option<&'static str>,
    /// How the load balancers forward.
    pub mode: Mode,
    /// Whether the backends advertise their own address as their preferred address
    /// (`qlb serve --preferred-address`).
    pub preferred_address: bool,
    /// Whether clients, load balancers and backends talk over IPv6 loopback (`::1`) instead
    /// of 127.0.0.1 (admin APIs and metrics stay on IPv4).
    pub ipv6: bool,
    /// Whether the backends share one self-signed certificate for `localhost`
    /// ([`Cluster::identity`]), which a browser can be told to trust; otherwise each makes
    /// its own.
    pub identity: bool,
}

/// The load balancers' forwarding mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `mode = "proxy"`: a flow and an upstream socket per client.
    #[default]
    Proxy,
    /// `mode = "gue"`: the backends (`qlb serve --gue`) receive GUE and answer back through
    /// the load balancer that sent it.
    Gue,
}

/// GUE ports per load balancer (`[gue] ports`).
const GUE_PORTS: u16 = 4;

impl Default for Spec {
    fn default() -> Self {
        Self {
            backends: 3,
            lbs: 1,
            workers: 2,
            health: None,
            admin: false,
            retry: None,
            mode: Mode::Proxy,
            preferred_address: false,
            ipv6: false,
            identity: false,
        }
    }
}

impl Spec {
    /// The loopback address the cluster's QUIC and GUE traffic uses, as written before a
    /// port.
    fn loopback(&self) -> &'static str {
        match self.ipv6 {
            true => "[::1]",
            false => "127.0.0.1",
        }
    }

    /// The default cluster with [`HealthChecks::FAST`] and the admin API.
    pub(crate) fn checked() -> Self {
        Self {
            health: Some(HealthChecks::FAST),
            admin: true,
            ..Self::default()
        }
    }
}

/// The `[health]` table of the load balancers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct HealthChecks {
    pub interval: Duration,
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

impl HealthChecks {
    /// A check every 200 ms (200 ms timeout), two in a row to change a backend's state: a
    /// dead backend is out in about 600 ms, a restarted one in at about 400 ms.
    pub(crate) const FAST: Self = Self {
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(200),
        healthy_threshold: 2,
        unhealthy_threshold: 2,
    };

    /// A check every 500 ms with a 500 ms timeout, four failures in a row to take a backend
    /// out: for tests whose backends leave by other means (a fleet on etcd), so that a
    /// debug-build backend slow to answer on a busy machine is not taken for dead, its
    /// connections sent elsewhere and reset.
    pub(crate) const TOLERANT: Self = Self {
        interval: Duration::from_millis(500),
        timeout: Duration::from_millis(500),
        healthy_threshold: 2,
        unhealthy_threshold: 4,
    };

    /// About how long a dead backend may still get new connections (config.md): `interval`
    /// times `unhealthy_threshold`, plus `timeout`.
    pub(crate) fn detection_time(&self) -> Duration {
        self.interval * self.unhealthy_threshold + self.timeout
    }
}

/// The running cluster; every process is killed when it is dropped.
pub(crate) struct Cluster {
    pub backends: Vec<Backend>,
    pub lbs: Vec<Lb>,
    /// The backends' certificate, if [`Spec::identity`].
    identity: Option<SelfSigned>,
    /// Holds the configuration files, the key and the secret.
    dir: tempfile::TempDir,
}

/// One `qlb serve`.
pub(crate) struct Backend {
    pub name: String,
    pub server_id: String,
    /// Its HTTP/3 (UDP) address.
    pub addr: SocketAddr,
    /// Where it receives GUE, in [`Mode::Gue`] (kept across restarts).
    pub gue: Option<SocketAddr>,
    /// Its Prometheus endpoint (TCP; a restart picks another port).
    pub metrics: SocketAddr,
    config: PathBuf,
    /// `--cert` and `--key`, if the cluster shares a certificate.
    tls: Vec<String>,
    process: Process,
}

/// One `qlb lb`.
pub(crate) struct Lb {
    /// Its listening address (kept across restarts).
    pub addr: SocketAddr,
    /// Its admin API, if [`Spec::admin`] (a restart picks another port).
    pub admin: Option<SocketAddr>,
    config: PathBuf,
    name: String,
    process: Process,
}

impl Cluster {
    /// Starts the backends (each on a port of its own choosing), then the load balancers
    /// (likewise); returns once every process has logged that it serves.
    pub(crate) fn start(spec: Spec) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        write_keys(dir.path())?;
        // The backends read the QUIC-LB tables and the secret only; the `[[backend]]`
        // tables, which need the backends' addresses, are added for the load balancers.
        let shared = dir.path().join("cluster.toml");
        std::fs::write(&shared, config_text(&spec, &[])?)?;
        let identity = spec.identity.then(SelfSigned::localhost).transpose()?;
        let tls = match &identity {
            Some(identity) => {
                let (cert, key) = identity.write_pem(dir.path())?;
                ["--cert".into(), cert.display().to_string()]
                    .into_iter()
                    .chain(["--key".into(), key.display().to_string()])
                    .collect()
            }
            None => Vec::new(),
        };
        let backends = (1..=spec.backends)
            .map(|i| {
                let (name, server_id) = (format!("b{i}"), format!("{i:04x}"));
                Backend::start(&name, &server_id, &shared, &spec, tls.clone())
            })
            .collect::<TestResult<Vec<_>>>()?;
        let lbs = (1..=spec.lbs)
            .map(|i| {
                let config = dir.path().join(format!("lb{i}.toml"));
                std::fs::write(&config, config_text(&spec, &backends)?)?;
                Lb::start(&format!("lb{i}"), config, &spec)
            })
            .collect::<TestResult<Vec<_>>>()?;
        Ok(Self {
            backends,
            lbs,
            identity,
            dir,
        })
    }

    /// The certificate every backend presents, with [`Spec::identity`].
    pub(crate) fn identity(&self) -> TestResult<&SelfSigned> {
        Ok(self
            .identity
            .as_ref()
            .ok_or("the cluster has no shared certificate (Spec::identity)")?)
    }

    /// Waits up to `timeout` until every load balancer's health checks find every backend
    /// up (needs [`Spec::checked`] or the like).
    pub(crate) fn wait_until_up(&self, timeout: Duration) -> TestResult {
        for lb in &self.lbs {
            for backend in &self.backends {
                lb.wait_until_up(&backend.name, timeout)?;
            }
        }
        Ok(())
    }

    /// The temporary directory, for the test's own files.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `series` on every backend, by name.
    pub(crate) fn metric_per_backend(&self, series: &str) -> TestResult<Vec<(String, f64)>> {
        self.backends
            .iter()
            .map(|b| Ok((b.name.clone(), b.metric(series)?)))
            .collect()
    }

    /// The one backend that completed a handshake, checking that it completed exactly one:
    /// the test's only connection was served there and nowhere else.
    pub(crate) fn sole_server(&self) -> TestResult<&Backend> {
        let handshakes = self.metric_per_backend("qlb_server_handshakes_total{result=\"ok\"}")?;
        match handshakes
            .iter()
            .filter(|(_, n)| *n > 0.0)
            .collect::<Vec<_>>()[..]
        {
            [(name, n)] if *n == 1.0 => self.backend(name),
            _ => Err(
                format!("want one connection on one backend; handshakes: {handshakes:?}").into(),
            ),
        }
    }

    /// Checks that every connection got `requests` `/whoami` answers, all from one backend
    /// (name and server ID), and that each backend completed one handshake per connection
    /// answered there (no handshake was split or repeated elsewhere); returns the number of
    /// connections per backend, every backend listed.
    pub(crate) fn connections_per_backend(
        &self,
        connections: &[WhoamiAnswers],
        requests: usize,
    ) -> TestResult<BTreeMap<String, usize>> {
        let mut per_backend: BTreeMap<String, usize> =
            self.backends.iter().map(|b| (b.name.clone(), 0)).collect();
        for (i, connection) in connections.iter().enumerate() {
            let whoami = connection
                .as_ref()
                .map_err(|err| format!("connection {i}: {err}"))?;
            let answers = &whoami.answers;
            let name = answers.first().and_then(|a| a["name"].as_str());
            let backend = self.backend(name.unwrap_or_default())?;
            let same = |a: &serde_json::Value| {
                a["name"] == backend.name.as_str() && a["server_id"] == backend.server_id.as_str()
            };
            if answers.len() != requests || !answers.iter().all(same) {
                return Err(format!(
                    "connection {i}: want {requests} answers from one backend, got {answers:?}"
                )
                .into());
            }
            *per_backend.entry(backend.name.clone()).or_default() += 1;
        }
        let handshakes = self.metric_per_backend("qlb_server_handshakes_total{result=\"ok\"}")?;
        for (name, count) in &handshakes {
            if *count != per_backend[name] as f64 {
                return Err(
                    format!("handshakes {handshakes:?}, connections {per_backend:?}").into(),
                );
            }
        }
        Ok(per_backend)
    }

    /// The backend named `name`.
    pub(crate) fn backend(&self, name: &str) -> TestResult<&Backend> {
        Ok(self
            .backends
            .iter()
            .find(|b| b.name == name)
            .ok_or_else(|| format!("no backend {name}"))?)
    }
}

impl Backend {
    /// Starts `qlb serve` on a port it picks, reading `config`, and as `spec` says: in
    /// [`Mode::Gue`] receiving GUE on another, advertising its preferred address.
    fn start(
        name: &str,
        server_id: &str,
        config: &Path,
        spec: &Spec,
        tls: Vec<String>,
    ) -> TestResult<Self> {
        let any_port = format!("{}:0", spec.loopback());
        let gue = (spec.mode == Mode::Gue).then_some(any_port.as_str());
        let mut extra = gue_args(gue);
        if spec.preferred_address {
            extra.extend(["--preferred-address", &any_port]);
        }
        extra.extend(tls.iter().map(String::as_str));
        let (mut process, addr, metrics) =
            spawn_serve(name, Some(server_id), &any_port, config, &extra)?;
        let gue = match gue {
            Some(_) => Some(gue_addr(&mut process)?),
            None => None,
        };
        Ok(Self {
            name: name.to_owned(),
            server_id: server_id.to_owned(),
            addr,
            gue,
            metrics,
            config: config.to_owned(),
            tls,
            process,
        })
    }

    /// SIGTERMs the backend: `qlb serve` sends GOAWAY, lets requests in flight finish and
    /// exits (after at most its `--shutdown-timeout`, 10 s).
    pub(crate) fn terminate(&mut self) -> TestResult {
        self.process.terminate()
    }

    /// Waits up to `timeout` for the backend to exit (after [`Backend::terminate`]).
    pub(crate) fn wait_stopped(&mut self, timeout: Duration) -> TestResult<ExitStatus> {
        self.process.wait(timeout)
    }

    /// SIGKILLs the backend (a crash or an OOM kill: no GOAWAY, no close).
    pub(crate) fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the backend again (once it has stopped) on its address, with its name and
    /// server ID; retries while the port is briefly taken by another process's socket.
    pub(crate) fn restart(&mut self) -> TestResult {
        let listen = self.addr.to_string();
        let gue = self.gue.map(|addr| addr.to_string());
        let (process, _, metrics) = on_its_port(&self.name, || {
            let mut extra = gue_args(gue.as_deref());
            extra.extend(self.tls.iter().map(String::as_str));
            spawn_serve(
                &self.name,
                Some(&self.server_id),
                &listen,
                &self.config,
                &extra,
            )
        })?;
        self.process = process;
        self.metrics = metrics;
        Ok(())
    }

    /// The value of one series, `name{labels}` exactly as in the text format; 0 if absent.
    pub(crate) fn metric(&self, series: &str) -> TestResult<f64> {
        let text = http::ok(self.metrics, "GET", "/metrics")?;
        Ok(text
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0))
    }

    /// Waits up to `timeout` until `series` reaches `at_least` (some series are counted when
    /// a connection ends, just after the client is gone); returns its value.
    pub(crate) fn wait_for_metric(
        &self,
        series: &str,
        at_least: f64,
        timeout: Duration,
    ) -> TestResult<f64> {
        match poll_blocking(timeout, || self.metric(series), |value| *value >= at_least)? {
            Polled::Held(value) => Ok(value),
            Polled::TimedOut(value) => Err(format!(
                "{}: {series} is {value} after {timeout:?}, want {at_least}",
                self.name
            )
            .into()),
        }
    }

    /// Waits until this backend has seen a client's address change (counted when a
    /// connection ends, just after the client is gone); returns how many it saw.
    pub(crate) fn client_address_changes(&self) -> TestResult<f64> {
        self.wait_for_metric(
            "qlb_server_peer_address_changes_total",
            1.0,
            Duration::from_secs(10),
        )
    }
}

impl Lb {
    fn start(name: &str, config: PathBuf, spec: &Spec) -> TestResult<Self> {
        let (process, addr, admin) = spawn_lb(name, &config, spec.admin)?;
        // Restarts must come back on the same port: write it into the file (`listen` comes
        // first; the admin API's port may change).
        let listen = format!("{}:0", spec.loopback());
        let text = std::fs::read_to_string(&config)?.replacen(&listen, &addr.to_string(), 1);
        std::fs::write(&config, text)?;
        Ok(Self {
            addr,
            admin,
            config,
            name: name.to_owned(),
            process,
        })
    }

    /// SIGKILLs the load balancer (no goodbye, as in a crash or an OOM kill).
    pub(crate) fn kill(&mut self) {
        self.process.kill();
    }

    /// Starts the load balancer again on its port (after [`Lb::kill`]); retries while the
    /// port is briefly taken by another process's ephemeral socket.
    pub(crate) fn restart(&mut self) -> TestResult {
        let (process, _, admin) = on_its_port(&self.name, || {
            spawn_lb(&self.name, &self.config, self.admin.is_some())
        })?;
        self.process = process;
        self.admin = admin;
        Ok(())
    }

    /// `GET /status` on the admin API.
    pub(crate) fn status(&self) -> TestResult<Value> {
        http::json(self.admin()?, "GET", "/status")
    }

    /// The entry of backend `name` in [`Lb::status`].
    pub(crate) fn backend_status(&self, name: &str) -> TestResult<Value> {
        backend_entry(&self.status()?, name)
    }

    /// `POST /backends/{name}/drain`: its effective state afterwards.
    pub(crate) fn drain(&self, name: &str) -> TestResult<String> {
        self.set_drained(name, "drain")
    }

    /// `POST /backends/{name}/undrain`: its effective state afterwards.
    pub(crate) fn undrain(&self, name: &str) -> TestResult<String> {
        self.set_drained(name, "undrain")
    }

    fn set_drained(&self, name: &str, verb: &str) -> TestResult<String> {
        let answer = http::json(self.admin()?, "POST", &format!("/backends/{name}/{verb}"))?;
        Ok(answer["effective_state"]
            .as_str()
            .ok_or_else(|| format!("{verb} {name}: {answer}"))?
            .to_owned())
    }

    /// Waits up to `timeout` until the status of backend `name` passes `done` (described by
    /// `what` in the error); returns that status.
    pub(crate) fn wait_for_backend(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> TestResult<Value> {
        match poll_blocking(timeout, || self.backend_status(name), done)? {
            Polled::Held(status) => Ok(status),
            Polled::TimedOut(status) => {
                Err(format!("{name} not {what} after {timeout:?}: {status}").into())
            }
        }
    }

    /// Waits up to `timeout` until health checks find backend `name` up and the router
    /// gives it new connections.
    pub(crate) fn wait_until_up(&self, name: &str, timeout: Duration) -> TestResult<Value> {
        self.wait_for_backend(name, "up and active", timeout, |status| {
            status["health"]["state"] == "up" && status["effective_state"] == "active"
        })
    }

    fn admin(&self) -> TestResult<SocketAddr> {
        Ok(self
            .admin
            .ok_or_else(|| format!("{} has no admin API (Spec::admin)", self.name))?)
    }
}

/// The entry of backend `name` in a `GET /status` answer.
pub(crate) fn backend_entry(status: &Value, name: &str) -> TestResult<Value> {
    status["backends"]
        .as_array()
        .and_then(|backends| backends.iter().find(|b| b["name"] == name))
        .cloned()
        .ok_or_else(|| format!("no backend {name} in {status}").into())
}

/// Starts `qlb serve` on `listen` with `extra` arguments (and `server_id`, unless etcd
/// allocates it); returns it once it serves, with its
/// HTTP/3 and metrics addresses.
pub(crate) fn spawn_serve(
    name: &str,
    server_id: Option<&str>,
    listen: &str,
    config: &Path,
    extra: &[&str],
) -> TestResult<(Process, SocketAddr, SocketAddr)> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qlb"));
    command
        .args(["serve", "--listen", listen, "--name", name])
        .args(["--metrics", "127.0.0.1:0"]);
    if let Some(server_id) = server_id {
        command.args(["--server-id", server_id]);
    }
    command
        .arg("--config")
        .arg(config)
        .args(["--shutdown-timeout", "10s"])
        .args(extra)
        .env("RUST_LOG", log_filter());
    let mut process = Process::spawn(name, &mut command)?;
    let metrics = process.wait_for_log("metrics on http://", START_TIMEOUT)?;
    let metrics = first_word(&metrics).trim_end_matches("/metrics").parse()?;
    let addr = first_word(&process.wait_for_log("serving HTTP/3 on ", START_TIMEOUT)?).parse()?;
    Ok((process, addr, metrics))
}

/// `qlb serve`'s arguments to receive GUE on `gue`, if given.
fn gue_args(gue: Option<&str>) -> Vec<&str> {
    gue.map(|addr| vec!["--gue", addr]).unwrap_or_default()
}

/// Where a `qlb serve --gue` receives GUE, from its log.
fn gue_addr(process: &mut Process) -> TestResult<SocketAddr> {
    Ok(
        first_word(&process.wait_for_log("receiving GUE on ", START_TIMEOUT)?)
            .trim_end_matches(';')
            .parse()?,
    )
}

/// The first of `count` consecutive UDP ports free on `ip` (for `[gue] ports`), probed by
/// binding them; another process may still take one before the load balancer does.
fn free_ports(ip: IpAddr, count: u16) -> TestResult<u16> {
    for _ in 0..100 {
        let base = 20_000 + rand::random::<u16>() % 30_000;
        let all_free =
            (base..base + count).all(|port| std::net::UdpSocket::bind((ip, port)).is_ok());
        if all_free {
            return Ok(base);
        }
    }
    Err(format!("no {count} consecutive free UDP ports").into())
}

/// Starts `qlb lb`; returns it once it serves, with its listening address and, if `admin`,
/// its admin API's.
pub(crate) fn spawn_lb(
    name: &str,
    config: &Path,
    admin: bool,
) -> TestResult<(Process, SocketAddr, Option<SocketAddr>)> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qlb"));
    command
        .arg("lb")
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", log_filter());
    let mut process = Process::spawn(name, &mut command)?;
    let addr = process.wait_for_log("load balancing on ", START_TIMEOUT)?;
    let addr = first_word(&addr).trim_end_matches(',').parse()?;
    let admin = match admin {
        true => Some(
            first_word(&process.wait_for_log("admin API on http://", START_TIMEOUT)?).parse()?,
        ),
        false => None,
    };
    Ok((process, addr, admin))
}

/// Runs `start` (a process starting on a port it had before) until it succeeds, while it
/// fails because the port is taken: another process's ephemeral socket may hold it briefly.
fn on_its_port<T>(
    name: &str,
    mut start: impl FnMut() -> TestResult<(Process, SocketAddr, T)>,
) -> TestResult<(Process, SocketAddr, T)> {
    for _ in 0..REBIND_ATTEMPTS {
        match start() {
            Err(err) if err.to_string().contains(PORT_TAKEN) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            result => return result,
        }
    }
    Err(format!("{name} could not bind its port again").into())
}

/// The children's log filter: the test's `RUST_LOG` (default `info`), with `qlb`'s own
/// lines at `info` always, as the harness reads them.
fn log_filter() -> String {
    let wanted = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    format!("{wanted},qlb=info")
}

/// Writes a fresh QUIC-LB key and cluster secret into `dir`, where [`config_text`]'s files
/// name them.
pub(crate) fn write_keys(dir: &Path) -> TestResult {
    let key: [u8; 16] = rand::random();
    let secret: [u8; 32] = rand::random();
    std::fs::write(dir.join("quic-lb.key"), hex::encode(key))?;
    std::fs::write(dir.join("cluster.secret"), hex::encode(secret))?;
    Ok(())
}

/// The cluster's configuration file: encrypted QUIC-LB (key and secret in files beside it),
/// free ports for the load balancer (`listen` first), health checks and admin API as `spec`
/// says.
pub(crate) fn config_text(spec: &Spec, backends: &[Backend]) -> TestResult<String> {
    let workers = spec.workers;
    let loopback = spec.loopback();
    let mode = match spec.mode {
        Mode::Proxy => "proxy",
        Mode::Gue => "gue",
    };
    let mut text = format!(
        "cluster_secret_file = \"cluster.secret\"\n\
         listen = [\"{loopback}:0\"]\n\
         workers = {workers}\n\
         mode = \"{mode}\"\n\
         flow_idle_timeout = \"30s\"\n\
         \n\
         [[quic_lb]]\n\
         config_id = {CONFIG_ID}\n\
         server_id_len = 2\n\
         nonce_len = 6\n\
         key_file = \"quic-lb.key\"\n"
    );
    // Writing to a String cannot fail.
    let _ = match spec.health {
        None => write!(text, "\n[health]\nenabled = false\n"),
        Some(health) => write!(
            text,
            "\n[health]\ninterval = \"{}ms\"\ntimeout = \"{}ms\"\n\
             healthy_threshold = {}\nunhealthy_threshold = {}\n",
            health.interval.as_millis(),
            health.timeout.as_millis(),
            health.healthy_threshold,
            health.unhealthy_threshold,
        ),
    };
    if spec.admin {
        text.push_str("\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    }
    if let Some(retry) = spec.retry {
        let _ = write!(text, "\n[retry]\n{retry}\n");
    }
    // The backends' part is written for the load balancers only; the backends read the
    // shared part, without `[gue]`, which needs free ports of the load balancer's.
    if spec.mode == Mode::Gue && !backends.is_empty() {
        let ip = loopback.trim_matches(['[', ']']).parse()?;
        let base = free_ports(ip, GUE_PORTS)?;
        let _ = write!(
            text,
            "\n[gue]\nbind = \"{loopback}:{base}\"\nports = {GUE_PORTS}\n"
        );
    }
    for backend in backends {
        let _ = write!(
            text,
            "\n[[backend]]\nname = \"{}\"\nserver_id = \"{}\"\n",
            backend.name, backend.server_id
        );
        let _ = match backend.gue {
            Some(gue) => write!(
                text,
                "addr = \"{gue}\"\nhealth_addr = \"{}\"\n",
                backend.addr
            ),
            None => writeln!(text, "addr = \"{}\"", backend.addr),
        };
    }
    Ok(text)
}

fn first_word(text: &str) -> &str {
    text.split_whitespace().next().unwrap_or_default()
}
