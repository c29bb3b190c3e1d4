//! `qlb get` as users run it: the real binary against a `qlb serve` child on loopback. The
//! body goes to stdout, `-v` adds the heads on stderr, `--ca` checks the certificate, and
//! failures exit non-zero with a one-line message.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use qlb_testkit::{SelfSigned, TestResult};
use support::cluster::spawn_serve;
use support::process::{Process, run};

/// How long a process may take on a loaded 2-core machine with a debug build.
const LIMIT: Duration = Duration::from_secs(30);

const CONFIG: &str = "listen = [\"127.0.0.1:4433\"]\n\
    cluster_secret = \"00112233445566778899aabbccddeeff\"\n\
    [[quic_lb]]\nconfig_id = 0\nserver_id_len = 2\nnonce_len = 6\n";

/// Starts `qlb serve` (name b1) on a free port with `extra` arguments; returns it with its
/// HTTP/3 address.
fn serve(dir: &Path, extra: &[&str]) -> TestResult<(Process, SocketAddr)> {
    let config = dir.join("lb.toml");
    std::fs::write(&config, CONFIG)?;
    let (serve, addr, _metrics) = spawn_serve("b1", Some("0a01"), "127.0.0.1:0", &config, extra)?;
    Ok((serve, addr))
}

fn get(args: &[&str]) -> TestResult<Output> {
    run(
        "qlb get",
        Command::new(env!("CARGO_BIN_EXE_qlb"))
            .arg("get")
            .args(args),
        LIMIT,
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn get_prints_the_body_and_with_verbose_the_heads() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_serve, addr) = serve(dir.path(), &[])?;
    let url = format!("https://{addr}/whoami");

    let plain = get(&[&url, "--insecure"])?;
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let json: serde_json::Value = serde_json::from_slice(&plain.stdout)?;
    assert_eq!(json["name"], "b1");
    assert!(plain.stderr.is_empty(), "{}", text(&plain.stderr));

    let verbose = get(&[&url, "-k", "-v"])?;
    assert!(verbose.status.success(), "{}", text(&verbose.stderr));
    let stderr = text(&verbose.stderr);
    for expected in [
        "* connected to ",
        "> GET /whoami HTTP/3",
        "< HTTP/3 200 OK",
        "< content-type: application/json",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in\n{stderr}"
        );
    }
    assert!(text(&verbose.stdout).contains("\"name\":\"b1\""));

    let large = get(&[&format!("https://{addr}/bytes/300000"), "-k"])?;
    assert!(large.status.success());
    assert_eq!(large.stdout.len(), 300_000);
    Ok(())
}

#[test]
fn get_checks_the_certificate_against_the_ca_file() -> TestResult {
    let dir = tempfile::tempdir()?;
    let certified = SelfSigned::localhost()?;
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, certified.certificate_pem())?;
    std::fs::write(&key, certified.private_key_pem())?;
    let other_ca = dir.path().join("other.pem");
    std::fs::write(&other_ca, SelfSigned::localhost()?.certificate_pem())?;
    let (cert, key, other_ca) = (utf8(&cert)?, utf8(&key)?, utf8(&other_ca)?);
    let (_serve, addr) = serve(dir.path(), &["--cert", cert, "--key", key])?;
    let url = format!("https://localhost:{}/whoami", addr.port());

    let trusted = get(&[&url, "--ca", cert])?;
    assert!(trusted.status.success(), "{}", text(&trusted.stderr));

    let untrusted = get(&[&url, "--ca", other_ca, "--timeout", "5s"])?;
    assert_eq!(untrusted.status.code(), Some(1));
    let stderr = text(&untrusted.stderr);
    assert!(
        stderr.starts_with("qlb: GET ") && stderr.contains("certificate"),
        "{stderr}"
    );

    let no_trust = get(&[&url])?;
    assert_eq!(no_trust.status.code(), Some(1));
    let stderr = text(&no_trust.stderr);
    assert!(stderr.contains("give --ca PEM"), "{stderr}");
    Ok(())
}

fn utf8(path: &Path) -> TestResult<&str> {
    Ok(path.to_str().ok_or("a UTF-8 path")?)
}

#[test]
fn get_failures_exit_non_zero_with_one_line() -> TestResult {
    let dir = tempfile::tempdir()?;
    let (_serve, addr) = serve(dir.path(), &[])?;

    let bad_request = get(&[&format!("https://{addr}/bytes/x"), "-k"])?;
    assert_eq!(
        bad_request.status.code(),
        Some(22),
        "an HTTP error, as curl --fail"
    );
    assert!(text(&bad_request.stderr).contains("the server answered 400 Bad Request"));

    // Nothing listens there: the handshake never completes.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let unreachable = get(&[&format!("https://{silent}/"), "-k", "--timeout", "1s"])?;
    assert_eq!(unreachable.status.code(), Some(1));
    let stderr = text(&unreachable.stderr);
    assert!(stderr.contains("no complete answer within 1s"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let not_https = get(&[&format!("http://{addr}/"), "-k"])?;
    assert!(!not_https.status.success());
    assert!(text(&not_https.stderr).contains("HTTP/3 needs https://"));
    Ok(())
}
