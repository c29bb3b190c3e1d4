//! `qlb lb` as operators run it: `--check-config` exit codes and messages, and the real
//! binary answering its admin API, reloading on SIGHUP (a bad file leaves it running on the
//! old configuration) and exiting 0 on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use qlb_testkit::{TestResult, fixtures};

/// How long the process gets to start, log, reload or stop (a debug build on a loaded
/// machine).
const PATIENCE: Duration = Duration::from_secs(30);

fn qlb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qlb"))
}

/// A configuration: the load balancer and its admin API on free loopback ports, no health
/// checks (the backends are not running), and `backends` backends.
fn config(backends: u8) -> String {
    let mut text = String::from("listen = [\"127.0.0.1:0\"]\nworkers = 1\n");
    text.push_str(&fixtures::table(0));
    text.push_str("[health]\nenabled = false\n[admin]\nlisten = \"127.0.0.1:0\"\n");
    for n in 1..=backends {
        text.push_str(&format!(
            "[[backend]]\nname = \"b{n}\"\naddr = \"127.0.0.1:{}\"\nserver_id = \"000{n}\"\n",
            5000 + u16::from(n)
        ));
    }
    text
}

#[test]
fn check_config_exits_zero_or_one_naming_the_field() -> TestResult {
    let dir = tempfile::tempdir()?;
    let cases = [
        (config(2), None),
        (
            config(2).replace("\"0002\"", "\"02\""),
            Some("backend[1].server_id:"),
        ),
        (
            config(1).replace("127.0.0.1:0\"]", "127.0.0.1:4433\", \"127.0.0.1:4433\"]"),
            Some("listen[1]: 127.0.0.1:4433 is also listen[0]"),
        ),
        (
            config(1).replace(
                "[admin]\nlisten = \"127.0.0.1:0\"",
                "[admin]\nlisten = \"0.0.0.0:9901\"",
            ),
            Some("admin.token_file: required"),
        ),
        (
            config(1).replace("workers = 1", "workers = \"1\""),
            Some("line 2: "),
        ),
        (
            config(1).replace(
                "workers = 1",
                "workers = 1\nmode = \"gue\"\n[gue]\nports = 0",
            ),
            Some("gue.ports: must be 1..=256"),
        ),
    ];
    for (text, refusal) in cases {
        let path = dir.path().join("lb.toml");
        std::fs::write(&path, &text)?;
        let output = qlb().arg("lb").arg("--check-config").arg(&path).output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        match refusal {
            None => {
                assert_eq!(output.status.code(), Some(0), "{stderr}");
                assert!(stdout.contains(": ok"), "{stdout}");
            }
            Some(field) => {
                assert_eq!(output.status.code(), Some(1), "{text}");
                assert!(stderr.contains(field), "{field:?} in {stderr}");
            }
        }
    }
    Ok(())
}

/// `qlb lb --config`, its stderr lines on a channel; killed on drop if still running.
struct Lb {
    child: Child,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Lb {
    fn start(config: &Path) -> TestResult<Self> {
        let mut child = qlb()
            .arg("lb")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().ok_or("stderr")?;
        let (lines, log) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Self {
            child,
            log,
            seen: Vec::new(),
        })
    }

    /// Waits for a log line containing `needle`; returns what follows it.
    /// The listening address it logs once it forwards.
    fn listen_addr(&mut self) -> TestResult<SocketAddr> {
        Ok(self
            .wait_for("load balancing on ")?
            .split_whitespace()
            .next()
            .ok_or("address")?
            .parse()?)
    }

    fn wait_for(&mut self, needle: &str) -> TestResult<String> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(rest) = self
                .seen
                .iter()
                .find_map(|line| Some(line.split_once(needle)?.1.to_owned()))
            {
                return Ok(rest);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return Err(format!("no {needle:?} in {:#?}", self.seen).into()),
            }
        }
    }

    /// Sends `signal` (`HUP`, `TERM`) and forgets the log so far.
    fn signal(&mut self, signal: &str) -> TestResult {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()?;
        assert!(status.success(), "kill -{signal}");
        self.seen.clear();
        Ok(())
    }
}

impl Drop for Lb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /status` from the admin API at `addr`: the HTTP status and the JSON body.
fn status(addr: SocketAddr) -> TestResult<(u16, serde_json::Value)> {
    let mut stream = TcpStream::connect_timeout(&addr, PATIENCE)?;
    stream.set_read_timeout(Some(PATIENCE))?;
    write!(
        stream,
        "GET /status HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no header end")?;
    let code = head.split_whitespace().nth(1).ok_or("no status")?.parse()?;
    Ok((code, serde_json::from_str(body)?))
}

fn backend_names(status: &serde_json::Value) -> Vec<String> {
    status["backends"]
        .as_array()
        .map(|backends| {
            backends
                .iter()
                .filter_map(|b| b["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_running_lb_reloads_on_sighup_keeps_running_on_a_bad_file_and_stops_on_sigterm() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("lb.toml");
    std::fs::write(&path, config(1))?;
    let mut lb = Lb::start(&path)?;
    let vip = lb.listen_addr()?;
    assert!(vip.ip().is_loopback() && vip.port() != 0);
    let admin: SocketAddr = lb.wait_for("admin API on http://")?.trim().parse()?;
    let (code, running) = status(admin)?;
    assert_eq!(code, 200);
    assert_eq!(backend_names(&running), ["b1"]);
    assert_eq!(running["listen"][0], vip.to_string());

    std::fs::write(&path, config(2).replace("\"0002\"", "\"02\""))?;
    lb.signal("HUP")?;
    let refusal = lb.wait_for("reload refused, the running configuration stays: ")?;
    assert!(refusal.starts_with("backend[1].server_id:"), "{refusal}");
    assert!(lb.child.try_wait()?.is_none(), "still running");
    let (code, kept) = status(admin)?;
    assert_eq!(code, 200);
    assert_eq!(backend_names(&kept), ["b1"]);
    assert_eq!(kept["reloads"]["refused"], 1);

    std::fs::write(&path, config(2))?;
    lb.signal("HUP")?;
    assert_eq!(lb.wait_for("configuration reloaded: ")?, "backends +b2");
    assert_eq!(backend_names(&status(admin)?.1), ["b1", "b2"]);

    lb.signal("TERM")?;
    let deadline = Instant::now() + PATIENCE;
    let exit = loop {
        if let Some(exit) = lb.child.try_wait()? {
            break exit;
        }
        assert!(Instant::now() < deadline, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0));
    lb.wait_for("stopped")?;
    Ok(())
}

#[test]
fn a_gue_mode_lb_encapsulates_client_datagrams_to_its_backend() -> TestResult {
    let backend = std::net::UdpSocket::bind("127.0.0.1:0")?;
    backend.set_read_timeout(Some(PATIENCE))?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("lb.toml");
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nworkers = 1\nmode = \"gue\"\n{}\
         [gue]\nbind = \"127.0.0.1:0\"\nports = 2\n[health]\nenabled = false\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [[backend]]\nname = \"b1\"\naddr = \"{}\"\nserver_id = \"0001\"\n",
        fixtures::table(0),
        backend.local_addr()?
    );
    std::fs::write(&path, &text)?;
    let output = qlb().arg("lb").arg("--check-config").arg(&path).output()?;
    assert_eq!(output.status.code(), Some(0), "{output:?}");

    let mut lb = Lb::start(&path)?;
    let vip = lb.listen_addr()?;
    let gue: Vec<SocketAddr> = lb
        .wait_for("GUE sockets on ")?
        .split(", ")
        .map(|a| a.trim().parse())
        .collect::<Result<_, _>>()?;
    assert_eq!(gue.len(), 2);
    let admin: SocketAddr = lb.wait_for("admin API on http://")?.trim().parse()?;
    let (code, running) = status(admin)?;
    assert_eq!(code, 200);
    assert_eq!(running["mode"], "gue");
    assert_eq!(running["gue"].as_array().map(Vec::len), Some(2));

    // A new connection's Initial reaches the backend whole behind GUE and inner IPv4 + UDP
    // headers (32 octets), from one of the GUE sockets.
    let from = an_initial_arrives_encapsulated(vip, &backend)?;
    assert!(gue.contains(&from), "{from} among {gue:?}");
    lb.signal("TERM")?;
    lb.wait_for("stopped")?;
    Ok(())
}

#[test]
fn an_xdp_mode_lb_whose_program_cannot_attach_forwards_in_userspace_and_says_why() -> TestResult {
    let backend = std::net::UdpSocket::bind("127.0.0.1:0")?;
    backend.set_read_timeout(Some(PATIENCE))?;
    // xdp mode needs a concrete GUE port: a free one.
    let gue_port = std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("lb.toml");
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nworkers = 1\nmode = \"xdp\"\n{}\
         [gue]\nbind = \"127.0.0.1:{gue_port}\"\nports = 1\n\
         [xdp]\ninterface = \"qlbnone0\"\n[health]\nenabled = false\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n\
         [[backend]]\nname = \"b1\"\naddr = \"{}\"\nserver_id = \"0001\"\n",
        fixtures::table(0),
        backend.local_addr()?
    );
    std::fs::write(&path, &text)?;
    let mut lb = Lb::start(&path)?;
    let vip = lb.listen_addr()?;
    let warning = lb.wait_for("the XDP program is not running")?;
    assert!(warning.contains("gue mode"), "{warning}");
    let admin: SocketAddr = lb.wait_for("admin API on http://")?.trim().parse()?;
    let (_, running) = status(admin)?;
    assert_eq!(running["mode"], "xdp");
    assert_eq!(running["xdp"]["running"], false, "{running}");
    assert_eq!(running["xdp"]["interface"], "qlbnone0");
    assert!(running["xdp"]["error"].is_string(), "{running}");

    // The userspace data plane forwards as in gue mode.
    let from = an_initial_arrives_encapsulated(vip, &backend)?;
    assert_eq!(from.port(), gue_port);
    lb.signal("TERM")?;
    lb.wait_for("stopped")?;
    Ok(())
}

/// Sends an Initial to `vip`; checks that `backend` receives it whole behind GUE and inner IPv4
/// and UDP headers (32 octets); returns where it came from.
fn an_initial_arrives_encapsulated(
    vip: SocketAddr,
    backend: &std::net::UdpSocket,
) -> TestResult<SocketAddr> {
    let client = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let mut datagram = vec![0xc0, 0, 0, 0, 1, 8, 0xe1, 2, 3, 4, 5, 6, 7, 8, 0];
    datagram.resize(1200, 0x5a);
    client.send_to(&datagram, vip)?;
    let mut buffer = [0; 2048];
    let (len, from) = backend.recv_from(&mut buffer)?;
    assert_eq!(len, 32 + datagram.len());
    assert_eq!(&buffer[..2], &[0, 4], "GUE, IPv4 inside");
    assert_eq!(&buffer[32..len], &datagram[..]);
    Ok(from)
}
