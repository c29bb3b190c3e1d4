//! A real etcd for tests (Debian's `etcd-server`): one member on free loopback ports, its
//! data in a temporary directory; stopped and removed on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::TestResult;
use crate::peers::require;

/// How long etcd may take to serve.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running etcd.
pub struct Etcd {
    child: Child,
    client: SocketAddr,
    peer: SocketAddr,
    dir: tempfile::TempDir,
}

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
        let dir = tempfile::tempdir()?;
        let client = free_port()?;
        let peer = free_port()?;
        let child = spawn(dir.path(), client, peer)?;
        let mut etcd = Self {
            child,
            client,
            peer,
            dir,
        };
        etcd.wait_healthy()?;
        Ok(etcd)
    }

    /// The client URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.client)
    }

    /// Kills etcd (SIGKILL), as a crash or a partition would take it away.
    pub fn kill(&mut self) -> TestResult {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// Starts etcd again on the same ports and data, after [`kill`](Self::kill).
    pub fn restart(&mut self) -> TestResult {
        self.child = spawn(self.dir.path(), self.client, self.peer)?;
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

fn spawn(dir: &std::path::Path, client: SocketAddr, peer: SocketAddr) -> TestResult<Child> {
    Ok(Command::new("etcd")
        .arg("--data-dir")
        .arg(dir)
        .args(["--name", "qlb-test"])
        .arg(format!("--listen-client-urls=http://{client}"))
        .arg(format!("--advertise-client-urls=http://{client}"))
        .arg(format!("--listen-peer-urls=http://{peer}"))
        .arg(format!("--initial-advertise-peer-urls=http://{peer}"))
        .arg(format!("--initial-cluster=qlb-test=http://{peer}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
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
