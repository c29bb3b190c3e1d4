//! The contenders: a raw forwarder (the ceiling), Debian's nginx `stream` UDP proxy, and the
//! qlb data plane; and the CPU bookkeeping around them (pinning threads, CPU time used).

use std::fmt::Write as _;
use std::io::{self, IoSliceMut};
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use qlb_lb::config::LbConfig;
use qlb_lb::daemon::dataplane_options;
use qlb_lb::dataplane::{Dataplane, DataplaneDrop};
use qlb_router::Route;
use quic_lb::Encoder;
use quinn_udp::{BATCH_SIZE, RecvMeta, Transmit, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};

use crate::BenchResult;

/// The QUIC-LB configuration and backends of `qlb lb`'s configuration, in the schema of
/// issue 4 (four-pass encryption: 2-octet server IDs, 6-octet nonces, a key).
const QUIC_LB: &str = r#"
[[quic_lb]]
config_id = 0
server_id_len = 2
nonce_len = 6
key = "00112233445566778899aabbccddeeff"
length_self_encoding = true
"#;

/// As the data plane's listening sockets (`dataplane/socket.rs`): a 4 MiB receive buffer.
const LISTEN_RECV_BUFFER: usize = 4 << 20;
/// As the data plane's receive buffers (`dataplane/buffers.rs`): 64 KiB each, a batch of them.
const BUFFER_SIZE: usize = 1 << 16;
/// The most one transmit carries, as in the data plane (`dataplane/segments.rs`).
const MAX_TRANSMIT_OCTETS: usize = 65_507;
/// How often an idle forwarder or waiter looks at its stop flag.
const TICK: Duration = Duration::from_millis(20);
/// The longest nginx may take to start or stop, or a thread to name itself.
const NGINX_WAIT: Duration = Duration::from_secs(10);

/// A running contender, forwarding to the sinks until stopped.
pub(crate) enum Running {
    /// No forwarder: clients send to the sinks themselves (the latency baseline).
    Direct,
    Raw(RawForwarder),
    Nginx(Nginx),
    /// The data plane `qlb lb` runs, and its worker thread.
    Qlb(Dataplane, Option<Task>),
}

impl Running {
    /// Where a client of backend `backend` sends.
    pub(crate) fn destination(&self, sinks: &[SocketAddr], backend: usize) -> Option<SocketAddr> {
        match self {
            Self::Direct => sinks.get(backend).copied(),
            Self::Raw(raw) => Some(raw.addr),
            Self::Nginx(nginx) => Some(nginx.addr),
            Self::Qlb(dataplane, _) => dataplane.local_addrs().first().copied(),
        }
    }

    /// The thread or process doing the forwarding, for its CPU time.
    pub(crate) fn worker(&self) -> Option<Task> {
        match self {
            Self::Direct => None,
            Self::Raw(raw) => raw.task,
            Self::Nginx(nginx) => nginx.worker,
            Self::Qlb(_, worker) => *worker,
        }
    }

    /// Stops it. For qlb, notes anything not routed by CID and every drop it counted (the
    /// kernel's drops at a full listening socket are nobody's to count).
    pub(crate) fn stop(self) -> BenchResult<String> {
        match self {
            Self::Direct => Ok(String::new()),
            Self::Raw(raw) => raw.stop().map(|()| String::new()),
            Self::Nginx(nginx) => nginx.stop().map(|()| String::new()),
            Self::Qlb(dataplane, _) => {
                let stats = dataplane.shutdown()?;
                let mut note = String::new();
                for reason in DataplaneDrop::ALL {
                    let dropped = stats.dropped(reason);
                    if dropped > 0 {
                        write!(note, " {}={dropped}", reason.as_str())?;
                    }
                }
                let router = &stats.router;
                let not_by_cid = router.decisions() - router.routed(Route::Cid);
                if not_by_cid > 0 {
                    write!(note, " not_routed_by_cid={not_by_cid}")?;
                }
                Ok(note)
            }
        }
    }
}

/// A thread or process, by its Linux task ID.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Task(u32);

impl Task {
    /// The calling thread.
    pub(crate) fn current() -> io::Result<Self> {
        // "/proc/thread-self" links to "PID/task/TID".
        let link = std::fs::read_link("/proc/thread-self")?;
        let tid = link
            .file_name()
            .and_then(|name| name.to_str()?.parse().ok())
            .ok_or_else(|| io::Error::other("no thread ID in /proc/thread-self"))?;
        Ok(Self(tid))
    }

    /// CPU time (user + system) used so far.
    pub(crate) fn cpu_time(self) -> io::Result<Duration> {
        // The task's own line (`/proc/TID/stat` would be its whole process).
        let stat = std::fs::read_to_string(format!("/proc/{0}/task/{0}/stat", self.0))?;
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        let (Some(user), Some(system)) = (ticks(14), ticks(15)) else {
            return Err(io::Error::other("unreadable /proc stat"));
        };
        // USER_HZ is 100 on Linux.
        Ok(Duration::from_millis((user + system) * 10))
    }

    /// Restricts it to `cpu` (no-op for `None`).
    pub(crate) fn pin(self, cpu: Option<usize>) -> BenchResult {
        let Some(cpu) = cpu else { return Ok(()) };
        let status = Command::new("taskset")
            .args(["-p", "-c", &cpu.to_string(), &self.0.to_string()])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            return Err(format!("taskset -p -c {cpu} {} failed", self.0).into());
        }
        Ok(())
    }
}

/// This process's thread named `name`.
fn thread_named(name: &str) -> Option<Task> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .filter_map(Result::ok)
        .find(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .and_then(|entry| Some(Task(entry.file_name().to_str()?.parse().ok()?)))
}

/// The ceiling: the data plane's I/O with nothing in between. A thread with a listening
/// socket set up as the data plane's, edge-triggered in a `mio` poll, that receives
/// quinn-udp batches (recvmmsg, GRO) and sends them as the data plane does (GRO buffers with
/// GSO, runs of single datagrams for one place gathered into one GSO send) through one
/// upstream socket to a sink chosen by the client's port: no parsing, no routing, no flow
/// table.
pub(crate) struct RawForwarder {
    addr: SocketAddr,
    task: Option<Task>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl RawForwarder {
    pub(crate) fn start(sinks: &[SocketAddr], cpu: Option<usize>) -> BenchResult<Self> {
        let listener = listener()?;
        let addr = listener.local_addr()?;
        let upstream = UdpSocket::bind(SocketAddr::from(([0, 0, 0, 0], 0)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let (task_tx, task_rx) = std::sync::mpsc::channel();
        let thread = {
            let (sinks, stop) = (sinks.to_vec(), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("raw-forwarder".into())
                .spawn(move || {
                    task_tx.send(Task::current().ok()).ok();
                    forward_raw(listener, upstream, &sinks, &stop)
                })?
        };
        let task = task_rx.recv().ok().flatten();
        if let Some(task) = task {
            task.pin(cpu)?;
        }
        Ok(Self {
            addr,
            task,
            stop,
            thread: Some(thread),
        })
    }

    fn stop(mut self) -> BenchResult {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(outcome)) => Ok(outcome?),
            Some(Err(_)) => Err("the raw forwarder panicked".into()),
            None => Ok(()),
        }
    }
}

/// A listening socket as the data plane opens one: SO_REUSEPORT, 4 MiB receive buffer.
fn listener() -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    socket.set_recv_buffer_size(LISTEN_RECV_BUFFER)?;
    socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())?;
    Ok(socket.into())
}

fn forward_raw(
    listener: UdpSocket,
    upstream: UdpSocket,
    sinks: &[SocketAddr],
    stop: &AtomicBool,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    upstream.set_nonblocking(true)?;
    let mut listener = mio::net::UdpSocket::from_std(listener);
    let upstream = mio::net::UdpSocket::from_std(upstream);
    let listener_state = UdpSocketState::new((&listener).into())?;
    let upstream_state = UdpSocketState::new((&upstream).into())?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, Token(0), Interest::READABLE)?;
    let mut events = Events::with_capacity(16);
    let mut storage = vec![0u8; BATCH_SIZE * BUFFER_SIZE];
    let mut metas = [RecvMeta::default(); BATCH_SIZE];
    let max_segments = upstream_state.max_gso_segments().max(1);
    let mut gather = Vec::with_capacity(MAX_TRANSMIT_OCTETS);
    while !stop.load(Ordering::Relaxed) {
        match poll.poll(&mut events, Some(TICK)) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        // Edge-triggered: drain the socket.
        loop {
            let count = {
                let mut buffers = storage.chunks_mut(BUFFER_SIZE);
                let mut slices: [IoSliceMut<'_>; BATCH_SIZE] =
                    std::array::from_fn(|_| IoSliceMut::new(buffers.next().unwrap_or_default()));
                match listener_state.recv((&listener).into(), &mut slices, &mut metas) {
                    Ok(count) => count,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) => return Err(error),
                }
            };
            let received = |i: usize| {
                let meta = metas.get(i).filter(|_| i < count)?;
                let data = storage.get(i * BUFFER_SIZE..)?.get(..meta.len)?;
                // A single datagram, or a GRO buffer of several.
                let single = meta.stride == 0 || data.len() <= meta.stride;
                Some((meta, data, single))
            };
            let mut first = 0;
            while let Some((meta, data, single)) = received(first) {
                // As the data plane: single datagrams of several buffers bound for one place
                // with one codepoint leave gathered in one GSO send (every one as long as the
                // first but the last); a GRO buffer leaves as it lies.
                let (mut end, mut octets, mut last) = (first + 1, data.len(), data.len());
                while single && !data.is_empty() && end - first < max_segments {
                    let Some((next, next_data, next_single)) = received(end) else {
                        break;
                    };
                    if next.addr.port() != meta.addr.port()
                        || next.ecn != meta.ecn
                        || !next_single
                        || last != data.len()
                        || next_data.len() > data.len()
                        || octets + next_data.len() > MAX_TRANSMIT_OCTETS
                    {
                        break;
                    }
                    (end, octets, last) = (end + 1, octets + next_data.len(), next_data.len());
                }
                let Some(&destination) = sinks.get(usize::from(meta.addr.port()) % sinks.len())
                else {
                    break;
                };
                let (contents, segment) = if end - first == 1 {
                    (
                        data,
                        if meta.stride == 0 {
                            meta.len
                        } else {
                            meta.stride
                        }
                        .max(1),
                    )
                } else {
                    gather.clear();
                    for (_, data, _) in (first..end).filter_map(received) {
                        gather.extend_from_slice(data);
                    }
                    (gather.as_slice(), data.len())
                };
                first = end;
                for contents in contents.chunks(segment * max_segments) {
                    let transmit = Transmit {
                        destination,
                        ecn: meta.ecn,
                        contents,
                        segment_size: (contents.len() > segment).then_some(segment),
                        src_ip: None,
                    };
                    // Like the data plane: a datagram that cannot leave is dropped.
                    upstream_state.try_send((&upstream).into(), &transmit).ok();
                }
            }
        }
    }
    Ok(())
}

/// Debian's nginx with its `stream` module as a UDP proxy to the sinks: one worker process
/// (pinned), run from a generated configuration in a temporary directory.
pub(crate) struct Nginx {
    addr: SocketAddr,
    master: Child,
    worker: Option<Task>,
    _dir: tempfile::TempDir,
}

impl Nginx {
    pub(crate) fn start(sinks: &[SocketAddr], cpu: Option<usize>) -> BenchResult<Self> {
        let module = Path::new("/usr/lib/nginx/modules/ngx_stream_module.so");
        if !module.exists() {
            return Err(format!(
                "{} is missing: apt-get install -y nginx libnginx-mod-stream",
                module.display()
            )
            .into());
        }
        let dir = tempfile::tempdir()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], free_udp_port()?));
        let config = nginx_config(dir.path(), module, addr, sinks, cpu)?;
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, config)?;
        let master = Command::new("nginx")
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("starting nginx (apt-get install -y nginx libnginx-mod-stream): {e}")
            })?;
        let mut nginx = Self {
            addr,
            worker: None,
            master,
            _dir: dir,
        };
        let deadline = Instant::now() + NGINX_WAIT;
        while nginx.worker.is_none() {
            if let Some(status) = nginx.master.try_wait()? {
                let log = std::fs::read_to_string(nginx._dir.path().join("error.log"))
                    .unwrap_or_default();
                return Err(format!("nginx exited ({status}): {log}").into());
            }
            if Instant::now() > deadline {
                return Err("nginx started no worker".into());
            }
            std::thread::sleep(TICK);
            nginx.worker = children(nginx.master.id()).first().copied().map(Task);
        }
        Ok(nginx)
    }

    /// Stops nginx as its init script does (SIGQUIT would wait for sessions: SIGTERM).
    fn stop(mut self) -> BenchResult {
        self.terminate()
    }

    fn terminate(&mut self) -> BenchResult {
        if self.master.try_wait()?.is_some() {
            return Ok(());
        }
        Command::new("kill")
            .args(["-TERM", &self.master.id().to_string()])
            .status()?;
        let deadline = Instant::now() + NGINX_WAIT;
        while self.master.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.master.kill()?;
                self.master.wait()?;
                return Err("nginx did not stop on SIGTERM".into());
            }
            std::thread::sleep(TICK);
        }
        Ok(())
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // On the error paths; `stop` reports.
        self.terminate().ok();
    }
}

fn nginx_config(
    dir: &Path,
    module: &Path,
    addr: SocketAddr,
    sinks: &[SocketAddr],
    cpu: Option<usize>,
) -> BenchResult<String> {
    let mut config = String::new();
    writeln!(config, "load_module {};", module.display())?;
    writeln!(config, "worker_processes 1;")?;
    if let Some(cpu) = cpu {
        // A bit mask, lowest CPU rightmost.
        writeln!(config, "worker_cpu_affinity 1{};", "0".repeat(cpu))?;
    }
    writeln!(config, "pid {};", dir.join("nginx.pid").display())?;
    writeln!(
        config,
        "error_log {} warn;",
        dir.join("error.log").display()
    )?;
    // multi_accept: a readiness event drains the UDP socket instead of one datagram per
    // epoll_wait (nginx's default), which is how one would tune it for datagram load.
    writeln!(
        config,
        "events {{ worker_connections 4096; multi_accept on; }}"
    )?;
    writeln!(config, "stream {{")?;
    writeln!(config, "  upstream sinks {{")?;
    for sink in sinks {
        writeln!(config, "    server {sink};")?;
    }
    writeln!(config, "  }}")?;
    // Sessions (one per client address, with its own connected upstream socket) live until
    // idle for proxy_timeout; proxy_responses is left unlimited (no session ends per datagram).
    writeln!(
        config,
        "  server {{ listen {addr} udp; proxy_pass sinks; proxy_timeout 60s; }}"
    )?;
    writeln!(config, "}}")?;
    Ok(config)
}

/// The child processes of `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|child| child.parse().ok())
        .collect()
}

/// A UDP port free now on 127.0.0.1 (nginx binds it a moment later).
fn free_udp_port() -> io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `qlb lb`'s configuration for the sinks as backends `b1`, `b2`, ... (server IDs 0001,
/// 0002, ...) with 1 worker and health checks off; in GUE mode (`gue`) the sinks receive the
/// encapsulated datagrams from 8 GUE ports.
pub(crate) fn qlb_config(sinks: &[SocketAddr], gue: bool) -> BenchResult<LbConfig> {
    let mut text = String::from("listen = [\"127.0.0.1:0\"]\nworkers = 1\n");
    if gue {
        text.push_str("mode = \"gue\"\n");
    }
    text.push_str(QUIC_LB);
    if gue {
        // LB_BENCH_GUE_PORTS: the outer source ports (default 8, as `[gue] ports`).
        let ports = std::env::var("LB_BENCH_GUE_PORTS").unwrap_or_else(|_| "8".into());
        writeln!(text, "[gue]\nbind = \"127.0.0.1:0\"\nports = {ports}")?;
    }
    for (n, sink) in (1..).zip(sinks) {
        writeln!(
            text,
            "[[backend]]\nname = \"b{n}\"\naddr = \"{sink}\"\nserver_id = \"{n:04x}\""
        )?;
    }
    text.push_str("[health]\nenabled = false\n");
    Ok(LbConfig::from_toml(&text, Path::new("."))?)
}

/// The data plane as `qlb lb --config` starts it (`crates/qlb/src/lb.rs`): from the
/// configuration, its pool with no backend down, options from the configuration; its worker
/// pinned to `cpu`.
pub(crate) fn start_qlb(config: &LbConfig, cpu: Option<usize>) -> BenchResult<Running> {
    let pool = config.pool(|_| false)?;
    let dataplane = Dataplane::start(
        &config.listen,
        config.workers,
        Arc::new(pool),
        dataplane_options(config),
    )?;
    // A thread names itself once running: wait for the name.
    let deadline = Instant::now() + NGINX_WAIT;
    let worker = loop {
        if let Some(worker) = thread_named("qlb-lb-worker-0") {
            break worker;
        }
        if Instant::now() > deadline {
            return Err("no qlb-lb-worker-0 thread".into());
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    worker.pin(cpu)?;
    Ok(Running::Qlb(dataplane, Some(worker)))
}

/// An encoder of connection IDs for each backend of `config` (its first QUIC-LB table), in
/// backend order, as the backends (`qlb serve`) would issue them.
pub(crate) fn encoders(config: &LbConfig) -> BenchResult<Vec<Encoder>> {
    let quic_lb = config
        .cluster
        .quic_lb
        .first()
        .ok_or("no [[quic_lb]] table")?;
    Ok(config
        .backends
        .iter()
        .map(|backend| Encoder::new(quic_lb.clone(), backend.server_id))
        .collect::<Result<Vec<_>, _>>()?)
}
