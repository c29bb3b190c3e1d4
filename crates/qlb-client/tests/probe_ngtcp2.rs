//! The health prober against a real third-party HTTP/3 server: ngtcp2's `gtlsserver`
//! (Debian package ngtcp2-server), serving a document root on loopback.

use std::fs;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use qlb_client::{ProbeFailure, Prober, Trust};
use qlb_testkit::{SelfSigned, peers};

/// `gtlsserver`, or `None` outside CI when it is not installed (the test kit says so
/// loudly; in CI a missing peer fails the test).
fn gtlsserver() -> Option<PathBuf> {
    peers::gtlsserver_available().then(peers::gtlsserver)
}

/// A running `gtlsserver`, killed on drop.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a self-signed localhost certificate and a document root with `/healthz`.
fn site(dir: &Path) -> SelfSigned {
    let certified = SelfSigned::localhost().expect("certificate");
    fs::write(dir.join("cert.pem"), certified.certificate_pem()).expect("write");
    fs::write(dir.join("key.pem"), certified.private_key_pem()).expect("write");
    fs::create_dir_all(dir.join("htdocs")).expect("mkdir");
    fs::write(dir.join("htdocs/healthz"), "ok\n").expect("write");
    certified
}

fn start(binary: &Path, dir: &Path) -> Server {
    // A port the kernel just handed out and took back: free unless something races us.
    let port = UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(binary)
        .arg("--quiet")
        .arg(format!("--htdocs={}", dir.join("htdocs").display()))
        .args(["127.0.0.1", &port.to_string()])
        .arg(dir.join("key.pem"))
        .arg(dir.join("cert.pem"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gtlsserver starts");
    Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

/// Probes until the server answers (it needs a moment to start), for at most 10 s.
async fn first_answer(prober: &Prober, addr: SocketAddr) -> qlb_client::ProbeOutcome {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match prober
            .probe(addr, "localhost", "/healthz", Duration::from_millis(500))
            .await
        {
            Ok(outcome) => return outcome,
            Err(e) if Instant::now() > deadline => panic!("gtlsserver never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test]
async fn probes_a_real_http3_server_and_tells_health_from_failure() {
    let Some(binary) = gtlsserver() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    site(dir.path());
    let server = start(&binary, dir.path());
    let prober = Prober::new(&Trust::Insecure).expect("prober");

    let healthy = first_answer(&prober, server.addr).await;
    assert_eq!(healthy.status, http::StatusCode::OK);
    assert!(healthy.is_healthy());

    let missing = prober
        .probe(
            server.addr,
            "localhost",
            "/nothing-here",
            Duration::from_secs(2),
        )
        .await
        .expect("an answer");
    assert_eq!(missing.status, http::StatusCode::NOT_FOUND);
    assert!(!missing.is_healthy());

    // A dead backend fails within the timeout, not later.
    drop(server);
    let started = Instant::now();
    let dead = prober
        .probe(
            silent_port(),
            "localhost",
            "/healthz",
            Duration::from_millis(300),
        )
        .await;
    assert!(matches!(dead, Err(ProbeFailure::Timeout(_))), "{dead:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A loopback port with nothing listening: a dead backend. (The killed server's own port
/// could be taken again by another test meanwhile.)
fn silent_port() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|socket| socket.local_addr())
        .expect("free port")
}

#[tokio::test]
async fn verifies_certificates_when_given_roots() {
    let Some(binary) = gtlsserver() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let certified = site(dir.path());
    let server = start(&binary, dir.path());
    first_answer(&Prober::new(&Trust::Insecure).expect("prober"), server.addr).await;

    fs::write(dir.path().join("ca.pem"), certified.certificate_pem()).expect("write");
    let trusting = Prober::new(&Trust::from_pem_file(&dir.path().join("ca.pem")).expect("ca"))
        .expect("prober");
    let outcome = trusting
        .probe(server.addr, "localhost", "/healthz", Duration::from_secs(2))
        .await
        .expect("verified handshake");
    assert!(outcome.is_healthy());

    // The same certificate does not cover another name: the handshake fails.
    let wrong_name = trusting
        .probe(
            server.addr,
            "example.com",
            "/healthz",
            Duration::from_secs(2),
        )
        .await;
    assert!(
        matches!(wrong_name, Err(ProbeFailure::Connection(_))),
        "{wrong_name:?}"
    );

    // An unrelated root is refused too.
    let other = SelfSigned::localhost().expect("cert");
    fs::write(dir.path().join("other.pem"), other.certificate_pem()).expect("write");
    let stranger = Prober::new(&Trust::from_pem_file(&dir.path().join("other.pem")).expect("ca"))
        .expect("prober");
    let refused = stranger
        .probe(server.addr, "localhost", "/healthz", Duration::from_secs(2))
        .await;
    assert!(
        matches!(refused, Err(ProbeFailure::Connection(_))),
        "{refused:?}"
    );
}
