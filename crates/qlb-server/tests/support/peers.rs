//! The third-party QUIC peers: aioquic's HTTP/3 client (PyPI) and ngtcp2's gtlsclient
//! (Debian `ngtcp2-client`). On CI (`CI=true`) a missing peer fails the test; elsewhere the
//! test is skipped with a loud message.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;

/// Whether `program args` runs; fails (panics) on CI if it does not.
pub fn require(name: &str, program: &str, args: &[&str], install: &str) -> bool {
    let ok = std::process::Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !ok {
        let message = format!("{name} is not installed ({install}): peer test cannot run");
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{message}");
        }
        // Straight to the stderr handle, not `eprintln!`, which the test harness captures.
        let _ = writeln!(
            std::io::stderr(),
            "\n!!!!!!!!!! SKIPPED: {message} !!!!!!!!!!\n"
        );
    }
    ok
}

pub fn aioquic_available() -> bool {
    require(
        "aioquic",
        "python3",
        &["-c", "import aioquic"],
        "pip install aioquic",
    )
}

pub fn gtlsclient_available() -> bool {
    require(
        "ngtcp2 gtlsclient",
        "gtlsclient",
        &["--help"],
        "apt-get install ngtcp2-client",
    )
}

/// The aioquic client script.
pub fn aioquic_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aioquic_client.py")
}
