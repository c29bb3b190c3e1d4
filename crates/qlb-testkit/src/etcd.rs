//! A real etcd for tests (Debian's `etcd-server`): one member on free loopback ports, its
//! data in a temporary directory; stopped and removed on drop. [`Etcd::start_secure`] adds
//! TLS (a self-signed certificate for `localhost`) and authentication (user `root`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestResult;
use crate::identity::SelfSigned;
use crate::peers::require;

/// How long etcd may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running etcd.
pub struct Etcd {
    child: Child,
    /// The plain client listener: health checks, and the tests' clients unless secure.
    client: SocketAddr,
    peer: SocketAddr,
    /// With TLS: the TLS client listener and the certificate's PEM file.
    secure: Option<(SocketAddr, PathBuf)>,
    dir: tempfile::TempDir,
}

/// The user [`Etcd::start_secure`] creates, and its password.
pub const ETCD_USER: (&str, &str) = ("root", "qlb-test-password");

/// Whether `etcd` runs ([`require`]: on CI its absence fails the test).
pub fn etcd_available() -> bool {
    require(
        "etcd",
        "etcd",
        &["--version"],
        "apt-get install etcd-server",
    )
}

impl Etcd {
    /// Starts etcd and waits until it reports itself healthy.
    pub fn start() -> TestResult<Self> {
        Self::start_with(false)
    }

    /// Starts etcd serving TLS (with a self-signed certificate for `localhost`, whose PEM
    /// file [`ca_file`](Self::ca_file) names) with authentication on: user [`ETCD_USER`]
    /// with the root role, and tokens that expire after 2 s, so that tests see renewals.
    pub fn start_secure() -> TestResult<Self> {
        let etcd = Self::start_with(true)?;
        let (user, password) = ETCD_USER;
        let credentials = format!(r#"{{"name":"{user}","password":"{password}"}}"#);
        post(etcd.client, "/v3/auth/user/add", &credentials)?;
        post(
            etcd.client,
            "/v3/auth/user/grant",
            &format!(r#"{{"user":"{user}","role":"root"}}"#),
        )?;
        post(etcd.client, "/v3/auth/enable", "{}")?;
        Ok(etcd)
    }

    fn start_with(tls: bool) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let client = free_port()?;
        let peer = free_port()?;
        let secure = match tls {
            true => {
                let (cert, _) = SelfSigned::localhost()?.write_pem(dir.path())?;
                Some((free_port()?, cert))
            }
            false => None,
        };
        let child = spawn(dir.path(), client, peer, secure.as_ref())?;
        let mut etcd = Self {
            child,
            client,
            peer,
            secure,
            dir,
        };
        etcd.wait_healthy()?;
        Ok(etcd)
    }

    /// The client URL: `http://127.0.0.1:PORT`, or `https://localhost:PORT` when secure.
    pub fn url(&self) -> String {
        match &self.secure {
            Some((addr, _)) => format!("https://localhost:{}", addr.port()),
            None => format!("http://{}", self.client),
        }
    }

    /// The PEM file of the certificate a secure etcd presents (trust it as the CA).
    pub fn ca_file(&self) -> Option<&Path> {
        self.secure.as_ref().map(|(_, cert)| cert.as_path())
    }

    /// Kills etcd (SIGKILL), as a crash or a partition would take it away.
    pub fn kill(&mut self) -> TestResult {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts etcd again on the same ports and data, after [`kill`](Self::kill).
    pub fn restart(&mut self) -> TestResult {
        self.child = spawn(
            self.dir.path(),
            self.client,
            self.peer,
            self.secure.as_ref(),
        )?;
        self.wait_healthy()
    }

    fn wait_healthy(&mut self) -> TestResult {
        let deadline = Instant::now() + START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Err(format!("etcd exited at start: {status}").into());
            }
            if healthy(self.client) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("etcd not healthy within {START_TIMEOUT:?}").into())
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(
    dir: &Path,
    client: SocketAddr,
    peer: SocketAddr,
    secure: Option<&(SocketAddr, PathBuf)>,
) -> TestResult<Child> {
    let mut command = Command::new("etcd");
    command.arg("--data-dir").arg(dir.join("data"));
    match secure {
        None => {
            command
                .arg(format!("--listen-client-urls=http://{client}"))
                .arg(format!("--advertise-client-urls=http://{client}"));
        }
        Some((tls, cert)) => {
            command
                .arg(format!(
                    "--listen-client-urls=http://{client},https://{tls}"
                ))
                .arg(format!(
                    "--advertise-client-urls=https://localhost:{}",
                    tls.port()
                ))
                .arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(cert.with_file_name("key.pem"))
                .args(["--auth-token", "simple", "--auth-token-ttl", "2"]);
        }
    }
    Ok(command
        .args(["--name", "qlb-test"])
        .arg(format!("--listen-peer-urls=http://{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
        .arg(format!("--initial-cluster=qlb-test=http://{peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// POSTs `body` to etcd's `path` on its plain listener; fails unless it answers 200.
fn post(client: SocketAddr, path: &str, body: &str) -> TestResult {
    let mut stream = TcpStream::connect_timeout(&client, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: etcd\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    match answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200") {
        true => Ok(()),
        false => Err(format!("etcd {path}: {answer}").into()),
    }
}

/// A loopback port nobody listens on (another process may still take it first).
fn free_port() -> TestResult<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Whether etcd's `/health` says so.
fn healthy(client: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&client, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    if stream
        .write_all(b"GET /health HTTP/1.0\r\nHost: etcd\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.contains("\"health\":\"true\"")
}
