//! GUE mode end to end, with real `qlb lb` and `qlb serve --gue` processes.
//!
//! * On loopback, replies return through the load balancer (stateless return): the backends
//!   see each client's own address and port, a client that moves is seen to move, and the
//!   load balancer keeps no flow for anyone.
//! * In network namespaces the test builds (a client, a load balancer and two backends on one
//!   bridge, the VIP on the load balancer's and the backends' loopback, the client routing it
//!   via the load balancer), replies return directly (direct server return): the backends
//!   answer the client from the VIP, and nothing comes back through the load balancer.
//!   qlb-client, aioquic and ngtcp2's gtlsclient (moving to a new local address
//!   mid-transfer) all work.
//! * The same lab in `xdp` mode: the XDP program on the load balancer's interface decides
//!   and encapsulates in the kernel (generic XDP on the veth); the userspace data plane sees
//!   only what the program passed up, and the clients cannot tell the difference; a backend
//!   drained keeps its connections, and once killed its clients are reset by the fleet.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use qlb_testkit::netns::{self, Host, Lan};
use qlb_testkit::peers::{aioquic_available, gtlsclient_available};
use qlb_testkit::{H3Client, fixtures, transport, within};
use serde_json::Value;
use support::TestResult;
use support::cluster::{Cluster, Mode, Spec};
use support::peers::{Echo, aioquic_whoami_on, run_gtlsclient};
use support::process::{Process, qlb_get_json};

/// The longest a client may run (a debug build on a loaded 2-core machine).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a process may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

#[test]
fn backends_see_the_clients_own_address_and_the_lb_keeps_no_flows() -> TestResult {
    clients_are_seen_as_themselves_and_the_lb_keeps_no_flows(false)
}

/// The same over IPv6: the GUE packets carry IPv6 inner headers both ways.
#[test]
fn over_ipv6_backends_see_the_clients_own_address_and_the_lb_keeps_no_flows() -> TestResult {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        return Err("this host has no IPv6 loopback".into());
    }
    clients_are_seen_as_themselves_and_the_lb_keeps_no_flows(true)
}

fn clients_are_seen_as_themselves_and_the_lb_keeps_no_flows(ipv6: bool) -> TestResult {
    let cluster = Cluster::start(Spec {
        backends: 2,
        admin: true,
        mode: Mode::Gue,
        ipv6,
        ..Spec::default()
    })?;
    let lb = cluster.lbs[0].addr;
    let runtime = tokio::runtime::Runtime::new()?;
    let (before, after, local_before, local_after) = runtime.block_on(async {
        let config = qlb_client::Trust::Insecure.client_config()?;
        let mut client = H3Client::connect_with(lb, config).await?;
        let local_before = client.endpoint.local_addr()?;
        let before = client.whoami().await?;
        // The client moves to a new port: the backend sees that address next.
        client.rebind()?;
        let local_after = client.endpoint.local_addr()?;
        let mut after = client.whoami().await?;
        for _ in 0..20 {
            if after["peer"] == local_after.to_string() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            after = client.whoami().await?;
        }
        TestResult::Ok((before, after, local_before, local_after))
    })?;
    eprintln!("GUE whoami before {before} and after {after} moving");
    assert_eq!(before["peer"], local_before.to_string(), "{before}");
    assert_eq!(after["peer"], local_after.to_string(), "{after}");
    assert_eq!(
        before["name"], after["name"],
        "the connection kept its backend"
    );

    // qlb-client's own command, from a port of its own.
    let whoami = qlb_get_json(&format!("https://{lb}/whoami"), |c| c, CLIENT_TIMEOUT)?;
    let peer: SocketAddr = whoami["peer"].as_str().ok_or("peer")?.parse()?;
    assert!(
        peer.ip().is_loopback() && peer.is_ipv6() == ipv6 && peer.port() != lb.port(),
        "the backend saw {peer}"
    );

    let status = cluster.lbs[0].status()?;
    eprintln!("GUE load balancer status: {status}");
    assert_eq!(status["mode"], "gue", "{status}");
    assert_eq!(
        status["flows"]["created"], 0,
        "no flow in GUE mode: {status}"
    );
    Ok(())
}

/// The direct-return lab: a client, a load balancer and two backends on one bridge.
struct Lab {
    client: Host,
    lb: Host,
    backends: Vec<Host>,
    processes: Vec<Process>,
    dir: tempfile::TempDir,
    /// The load balancer's admin API (on its host's loopback).
    admin: SocketAddr,
    /// The backends' metrics endpoints (on their hosts).
    metrics: Vec<SocketAddr>,
    _lan: Lan,
}

/// The VIP: on the load balancer's and the backends' loopback; the client routes it via the
/// load balancer.
const VIP: Ipv4Addr = Ipv4Addr::new(10, 77, 1, 1);
const VIP_PORT: u16 = 443;
const QUIC_PORT: u16 = 4433;
const GUE_PORT: u16 = 6080;

/// How the lab's load balancer forwards.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Forwarding {
    /// `mode = "gue"`: the userspace data plane.
    Userspace,
    /// `mode = "xdp"`: the XDP program on its `eth0`, generic mode.
    Xdp,
}

impl Lab {
    fn start(path: Forwarding) -> TestResult<Self> {
        let lan = Lan::new("dsr", "10.77.0")?;
        let client = lan.host("client", 10)?;
        let lb = lan.host("lb", 2)?;
        let backends = vec![lan.host("b1", 11)?, lan.host("b2", 12)?];
        lb.add_local(VIP)?;
        for backend in &backends {
            backend.add_local(VIP)?;
        }
        client.route_via(VIP, lb.ip())?;
        let xdp = match path {
            Forwarding::Userspace => "",
            Forwarding::Xdp => {
                // The program's route lookup forwards only where the interface does.
                lb.netns().sysctl("net.ipv4.conf.all.forwarding", "1")?;
                "[xdp]\ninterface = \"eth0\"\nattach = \"generic\"\n"
            }
        };
        let mode = match path {
            Forwarding::Userspace => "gue",
            Forwarding::Xdp => "xdp",
        };

        let dir = tempfile::tempdir()?;
        let secret: String = fixtures::CLUSTER_SECRET
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let secret = format!("cluster_secret = \"{secret}\"\n");
        let table = fixtures::table(1);
        std::fs::write(dir.path().join("cluster.toml"), format!("{secret}{table}"))?;
        let mut processes = Vec::new();
        let mut metrics = Vec::new();
        // Top-level keys first: after a table header, keys are the table's.
        let mut lb_file = format!(
            "{secret}listen = [\"{VIP}:{VIP_PORT}\"]\nworkers = 1\nmode = \"{mode}\"\n{table}\
             [gue]\nbind = \"{}:{GUE_PORT}\"\nports = 4\n{xdp}\
             [health]\ninterval = \"200ms\"\ntimeout = \"200ms\"\nhealthy_threshold = 1\n\
             unhealthy_threshold = 3\n[admin]\nlisten = \"127.0.0.1:8080\"\n",
            lb.ip(),
        );
        for (i, backend) in backends.iter().enumerate() {
            let (name, server_id) = (format!("b{}", i + 1), format!("{:04x}", i + 1));
            let ip = backend.ip();
            let mut command = backend.command(env!("CARGO_BIN_EXE_qlb"));
            command
                .args(["serve", "--name", &name, "--server-id", &server_id])
                .args(["--listen", &format!("{ip}:{QUIC_PORT}")])
                .args(["--gue", &format!("{ip}:{GUE_PORT}"), "--direct-return"])
                .args(["--metrics", &format!("{ip}:9100")])
                .arg("--config")
                .arg(dir.path().join("cluster.toml"));
            let mut process = Process::spawn(&name, &mut command)?;
            process.wait_for_log("receiving GUE on ", START_TIMEOUT)?;
            processes.push(process);
            metrics.push(SocketAddr::new(ip, 9100));
            lb_file.push_str(&format!(
                "[[backend]]\nname = \"{name}\"\nserver_id = \"{server_id}\"\n\
                 addr = \"{ip}:{GUE_PORT}\"\nhealth_addr = \"{ip}:{QUIC_PORT}\"\n"
            ));
        }
        std::fs::write(dir.path().join("lb.toml"), lb_file)?;
        let mut command = lb.command(env!("CARGO_BIN_EXE_qlb"));
        command
            .arg("lb")
            .arg("--config")
            .arg(dir.path().join("lb.toml"));
        let mut process = Process::spawn("lb", &mut command)?;
        process.wait_for_log("load balancing on ", START_TIMEOUT)?;
        processes.push(process);
        let lab = Self {
            admin: "127.0.0.1:8080".parse()?,
            client,
            lb,
            backends,
            processes,
            dir,
            metrics,
            _lan: lan,
        };
        lab.wait_until_up()?;
        Ok(lab)
    }

    fn vip(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(VIP), VIP_PORT)
    }

    /// qlb-client: several connections, each seen by its backend from the client's own
    /// address.
    fn backends_see_the_clients_address(&self) -> TestResult {
        for _ in 0..4 {
            let url = format!("https://{}/whoami", self.vip());
            let whoami = qlb_get_json(&url, |c| self.client.wrap(&c), CLIENT_TIMEOUT)?;
            let peer: SocketAddr = whoami["peer"].as_str().ok_or("peer")?.parse()?;
            assert_eq!(peer.ip(), self.client.ip(), "{whoami}");
        }
        Ok(())
    }

    /// GET `url` from `host` (the test's own namespace cannot reach the lab).
    fn http_get(host: &Host, url: &str) -> TestResult<String> {
        let script = format!(
            "import urllib.request,sys\n\
             sys.stdout.write(urllib.request.urlopen('{url}', timeout=10).read().decode())"
        );
        let output = host.command("python3").args(["-c", &script]).output()?;
        match output.status.success() {
            true => Ok(String::from_utf8(output.stdout)?),
            false => Err(format!("GET {url}: {}", String::from_utf8_lossy(&output.stderr)).into()),
        }
    }

    /// POST `url` (no body) from `host`; its JSON answer.
    fn http_post(host: &Host, url: &str) -> TestResult<Value> {
        let script = format!(
            "import urllib.request,sys\n\
             request = urllib.request.Request('{url}', data=b'', method='POST')\n\
             sys.stdout.write(urllib.request.urlopen(request, timeout=10).read().decode())"
        );
        let output = host.command("python3").args(["-c", &script]).output()?;
        match output.status.success() {
            true => Ok(serde_json::from_slice(&output.stdout)?),
            false => Err(format!("POST {url}: {}", String::from_utf8_lossy(&output.stderr)).into()),
        }
    }

    fn status(&self) -> TestResult<Value> {
        Ok(serde_json::from_str(&Self::http_get(
            &self.lb,
            &format!("http://{}/status", self.admin),
        )?)?)
    }

    /// `series` on backend `i`, 0 if absent.
    fn backend_metric(&self, i: usize, series: &str) -> TestResult<f64> {
        let text = Self::http_get(
            &self.backends[i],
            &format!("http://{}/metrics", self.metrics[i]),
        )?;
        Ok(text
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or(0.0))
    }

    fn wait_until_up(&self) -> TestResult {
        for _ in 0..300 {
            let status = self.status()?;
            let up = status["backends"]
                .as_array()
                .is_some_and(|backends| backends.iter().all(|b| b["health"]["state"] == "up"));
            if up {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("the lab's backends never came up: {}", self.status()?).into())
    }

    /// Client datagrams to each backend and replies back through the load balancer, from its
    /// status.
    fn lb_traffic(&self) -> TestResult<Vec<(u64, u64)>> {
        let status = self.status()?;
        Ok(status["backends"]
            .as_array()
            .ok_or("backends")?
            .iter()
            .map(|b| {
                (
                    b["to_backend"]["packets"].as_u64().unwrap_or_default(),
                    b["to_client"]["packets"].as_u64().unwrap_or_default(),
                )
            })
            .collect())
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Before the namespaces go.
        for process in &mut self.processes {
            process.kill();
        }
    }
}

#[test]
fn direct_server_return_in_network_namespaces() -> TestResult {
    if !netns::available() {
        return Ok(());
    }
    let lab = Lab::start(Forwarding::Userspace)?;
    let vip = lab.vip();

    lab.backends_see_the_clients_address()?;

    // aioquic: connections spread over both backends, each answered by one.
    if aioquic_available() {
        let connections = aioquic_whoami_on(Some(&lab.client), vip, 8, 2, false, CLIENT_TIMEOUT)?;
        for connection in &connections {
            let whoami = connection.as_ref().map_err(|e| e.to_owned())?;
            let peers: Vec<&Value> = whoami.answers.iter().map(|a| &a["peer"]).collect();
            assert!(
                peers
                    .iter()
                    .all(|p| p.as_str().is_some_and(|p| p.starts_with("10.77.0.10:"))),
                "{peers:?}"
            );
        }
    }

    // gtlsclient: 20 MB up and back while moving to a new local address.
    if gtlsclient_available() {
        let echo = Echo::new(lab.dir(), 20_000_000)?;
        let log = run_gtlsclient(
            &mut lab
                .client
                .wrap(&echo.gtlsclient(vip, &["--change-local-addr=50ms"])),
            CLIENT_TIMEOUT,
        )?;
        assert!(
            log.contains("Changing local address"),
            "gtlsclient never moved"
        );
        echo.check()?;
        let moves: f64 = (0..lab.backends.len())
            .map(|i| lab.backend_metric(i, "qlb_server_peer_address_changes_total"))
            .sum::<TestResult<f64>>()?;
        eprintln!("DSR: gtlsclient moved mid-transfer; backends saw {moves} address change(s)");
    }

    // Everything reached the backends through the load balancer; nothing came back through
    // it: the backends answered directly from the VIP.
    let traffic = lab.lb_traffic()?;
    eprintln!("DSR: (to backend, back through the LB) per backend: {traffic:?}");
    assert!(traffic.iter().all(|&(to, _)| to > 0), "{traffic:?}");
    assert!(traffic.iter().all(|&(_, back)| back == 0), "{traffic:?}");
    let status = lab.status()?;
    assert_eq!(status["flows"]["created"], 0, "{status}");
    Ok(())
}

#[test]
fn xdp_mode_decides_in_the_kernel_and_passes_up_only_what_it_cannot() -> TestResult {
    if !netns::available() {
        return Ok(());
    }
    let lab = Lab::start(Forwarding::Xdp)?;
    let vip = lab.vip();
    let status = lab.status()?;
    assert_eq!(status["mode"], "xdp", "{status}");
    assert_eq!(status["xdp"]["running"], true, "{status}");
    lab.backends_see_the_clients_address()?;
    if aioquic_available() {
        let connections = aioquic_whoami_on(Some(&lab.client), vip, 8, 2, false, CLIENT_TIMEOUT)?;
        for connection in &connections {
            connection.as_ref().map_err(|e| e.to_owned())?;
        }
    }
    // 20 MB up and back, moving to a new local address, then rebinding its port, mid-way.
    if gtlsclient_available() {
        for (n, moves) in ["--change-local-addr=50ms", "--nat-rebinding"]
            .into_iter()
            .enumerate()
        {
            let dir = lab.dir().join(format!("echo-{n}"));
            std::fs::create_dir(&dir)?;
            let echo = Echo::new(&dir, 20_000_000)?;
            run_gtlsclient(
                &mut lab.client.wrap(&echo.gtlsclient(vip, &[moves])),
                CLIENT_TIMEOUT,
            )?;
            echo.check()?;
        }
    }

    let status = lab.status()?;
    let xdp = &status["xdp"];
    let sum = |counts: &Value| -> u64 {
        counts
            .as_object()
            .map_or(0, |counts| counts.values().filter_map(Value::as_u64).sum())
    };
    eprintln!("XDP: {xdp}");
    eprintln!(
        "userspace: routed {} dropped {}",
        status["routed"], status["dropped"]["router"]
    );
    // The kernel carried the traffic, by CID for established connections.
    assert!(xdp["routed"]["cid"].as_u64() > Some(1000), "{xdp}");
    // The userspace data plane decided exactly what the program passed up.
    let userspace = sum(&status["routed"]) + sum(&status["dropped"]["router"]);
    assert_eq!(userspace, sum(&xdp["passed"]), "{status}");
    // And the backends answered directly, as in gue mode.
    let traffic = lab.lb_traffic()?;
    assert!(traffic.iter().all(|&(_, back)| back == 0), "{traffic:?}");
    // The program's counters are in /metrics beside the userspace ones.
    let metrics = Lab::http_get(&lab.lb, &format!("http://{}/metrics", lab.admin))?;
    for series in [
        "qlb_lb_decisions_total{kind=\"cid\",path=\"xdp\"} ",
        "qlb_lb_codepoint_decisions_total{config_id=\"1\",path=\"xdp\"} ",
        "qlb_lb_dropped_total{stage=\"xdp\",reason=\"truncated\"} 0",
        "qlb_lb_xdp_passed_total{reason=\"no_route\"} ",
        "qlb_lb_xdp_running{interface=\"eth0\"} 1",
    ] {
        assert!(metrics.contains(series), "no {series} in\n{metrics}");
    }
    Ok(())
}

/// A client of the lab: a quinn connection with HTTP/3, and the backend that answers it.
struct LabClient {
    h3: H3Client,
    backend: String,
}

impl LabClient {
    /// Connects to `vip` from the calling thread's namespace, with a keep-alive, so that a
    /// connection whose backend died hears of it from the stateless reset, not its idle timeout.
    async fn connect(vip: SocketAddr) -> TestResult<Self> {
        let mut config = qlb_client::Trust::Insecure.client_config()?;
        config.transport_config(transport(
            Duration::from_secs(30),
            Some(Duration::from_millis(500)),
        )?);
        let mut h3 = H3Client::connect_from("0.0.0.0:0".parse()?, vip, config).await?;
        let backend = within(CLIENT_TIMEOUT, "GET /whoami", h3.backend()).await??;
        Ok(Self { h3, backend })
    }
}

/// What the client thread is told to do next, and answers when done.
enum Step {
    Drained,
    Killed,
}

#[test]
fn xdp_mode_a_drained_then_killed_backends_clients_are_reset_by_the_fleet() -> TestResult {
    if !netns::available() {
        return Ok(());
    }
    let mut lab = Lab::start(Forwarding::Xdp)?;
    let vip = lab.vip();
    let admin = lab.admin;
    let (client_host, lb_host, processes) = (&lab.client, &lab.lb, &mut lab.processes);
    let (to_clients, steps) = std::sync::mpsc::channel::<Step>();
    let (to_main, done) = std::sync::mpsc::channel::<String>();
    std::thread::scope(|scope| -> TestResult {
        let clients = scope.spawn(move || -> TestResult {
            client_host.netns().enter()?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                // Until each backend has a connection.
                let mut placed: Vec<LabClient> = Vec::new();
                for _ in 0..40 {
                    if ["b1", "b2"]
                        .iter()
                        .all(|b| placed.iter().any(|c| c.backend == *b))
                    {
                        break;
                    }
                    placed.push(LabClient::connect(vip).await?);
                }
                let (mut victims, mut survivors): (Vec<_>, Vec<_>) =
                    placed.into_iter().partition(|c| c.backend == "b1");
                if victims.is_empty() || survivors.is_empty() {
                    return Err("40 connections did not reach both backends".into());
                }
                to_main.send("placed".into())?;

                // Drained: its connections keep it, new ones go elsewhere.
                let Ok(Step::Drained) = steps.recv() else {
                    return Err("no drain".into());
                };
                assert_eq!(victims[0].h3.backend().await?, "b1");
                for _ in 0..8 {
                    assert_eq!(LabClient::connect(vip).await?.backend, "b2");
                }
                to_main.send("drained".into())?;

                // Killed: the fleet's stateless reset reaches its clients well before their
                // idle timeout.
                let Ok(Step::Killed) = steps.recv() else {
                    return Err("no kill".into());
                };
                let killed = std::time::Instant::now();
                let end = tokio::time::timeout(Duration::from_secs(15), victims[0].h3.closed())
                    .await
                    .map_err(|_| "no stateless reset within 15 s")?;
                assert!(
                    matches!(end, quinn::ConnectionError::Reset),
                    "the victim's connection ended with {end:?}"
                );
                eprintln!(
                    "XDP: the killed backend's client was reset after {:?}",
                    killed.elapsed()
                );
                for survivor in &mut survivors {
                    assert_eq!(survivor.h3.backend().await?, "b2");
                }
                victims.clear();
                to_main.send("reset".into())?;
                TestResult::Ok(())
            })
        });
        let failed = |clients: std::thread::ScopedJoinHandle<'_, TestResult>| -> TestResult {
            match clients.join() {
                Ok(result) => result.and(Err("the clients stopped early".into())),
                Err(_) => Err("the client thread panicked".into()),
            }
        };
        let Ok(_placed) = done.recv_timeout(CLIENT_TIMEOUT) else {
            return failed(clients);
        };
        let drained = Lab::http_post(lb_host, &format!("http://{admin}/backends/b1/drain"))?;
        assert_eq!(drained["effective_state"], "draining", "{drained}");
        to_clients.send(Step::Drained)?;
        let Ok(_drained) = done.recv_timeout(CLIENT_TIMEOUT) else {
            return failed(clients);
        };
        // b1 is the first process started.
        processes[0].kill();
        to_clients.send(Step::Killed)?;
        let Ok(_reset) = done.recv_timeout(CLIENT_TIMEOUT) else {
            return failed(clients);
        };
        clients.join().map_err(|_| "the client thread panicked")?
    })?;
    // The program carried the clients: by CID, as the status says.
    let status = lab.status()?;
    assert!(
        status["xdp"]["routed"]["cid"].as_u64() > Some(0),
        "{status}"
    );
    Ok(())
}
