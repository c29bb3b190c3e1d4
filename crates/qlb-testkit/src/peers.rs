//! The third-party QUIC peers the interop tests run: aioquic's HTTP/3 client (PyPI
//! `aioquic`, driven by this crate's `peers/aioquic_client.py`) and ngtcp2's `gtlsclient`
//! and `gtlsserver` (Debian `ngtcp2-client`, `ngtcp2-server`). `scripts/test.sh` installs
//! them. In CI (`CI=true`) a missing peer fails the test; elsewhere the test says loudly that
//! it skipped.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Whether `program args` runs and exits 0. When it does not: panics in CI, and elsewhere
/// prints a loud line naming `name` and how to install it (`install`), and returns false so
/// the test can return early.
pub fn require(name: &str, program: &str, args: &[&str], install: &str) -> bool {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    ok || missing(name, install)
}

/// What a test does when `name` is not there: panics in CI, and elsewhere prints a loud line
/// naming it and how to install it (`install`), and returns false so the test can return
/// early.
pub fn missing(name: &str, install: &str) -> bool {
    let message = format!("{name} is not available ({install}): the test cannot run");
    assert!(!in_ci(), "{message}");
    // Straight to the stderr handle, not `eprintln!`, which the test harness captures.
    let _ = writeln!(
        std::io::stderr(),
        "\n!!!!!!!!!! SKIPPED: {message} !!!!!!!!!!\n"
    );
    false
}

/// Whether this is a CI run, where nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true")
}

/// Whether aioquic can be imported ([`require`]).
pub fn aioquic_available() -> bool {
    require(
        "aioquic",
        "python3",
        &["-c", "import aioquic"],
        "pip install aioquic",
    )
}

/// Whether ngtcp2's `gtlsclient` runs ([`require`]).
pub fn gtlsclient_available() -> bool {
    require(
        "ngtcp2 gtlsclient",
        "gtlsclient",
        &["--help"],
        "apt-get install ngtcp2-client",
    )
}

/// Whether ngtcp2's `gtlsserver` runs ([`require`]). Debian installs it in `/usr/sbin`,
/// which is not on every user's `PATH`: use [`gtlsserver`] to run it.
pub fn gtlsserver_available() -> bool {
    require(
        "ngtcp2 gtlsserver",
        &gtlsserver().to_string_lossy(),
        &["--help"],
        "apt-get install ngtcp2-server",
    )
}

/// The `gtlsserver` program: Debian's path when it is there, else the name for `PATH`.
pub fn gtlsserver() -> PathBuf {
    ["/usr/sbin/gtlsserver", "/usr/bin/gtlsserver"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("gtlsserver"))
}

/// The aioquic client script (its modes are described at its top).
pub fn aioquic_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers/aioquic_client.py")
}

/// A command running the aioquic client script in `mode` against `server`; the mode's
/// further arguments are added by the caller.
pub fn aioquic(mode: &str, server: SocketAddr) -> Command {
    let mut command = Command::new("python3");
    command.arg(aioquic_script()).args([
        mode.to_owned(),
        server.ip().to_string(),
        server.port().to_string(),
    ]);
    command
}

/// A command running ngtcp2's `gtlsclient` against `server` with `method` on
/// `https://localhost:PORT{path}`: no dumps of frames and bodies, exit once every stream is
/// closed, 30 s idle timeout. The caller adds what else it needs (options may follow the
/// operands: gtlsclient permutes them).
pub fn gtlsclient(server: SocketAddr, method: &str, path: &str) -> Command {
    let port = server.port();
    let mut command = Command::new("gtlsclient");
    command
        .args([
            "--no-quic-dump",
            "--no-http-dump",
            "--exit-on-all-streams-close",
            "--timeout=30s",
        ])
        .arg(format!("--http-method={method}"))
        .args([server.ip().to_string(), port.to_string()])
        .arg(format!("https://localhost:{port}{path}"));
    command
}
