//! `qlb serve` as operators run it: the real binary on loopback, stopped with SIGTERM while a
//! request is in flight. The request completes and the process exits 0.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use qlb_client::{Prober, Trust};

/// A `qlb serve` child, killed on drop if the test ends early.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `qlb serve` on an ephemeral port and returns it with its address, read from the
/// "serving HTTP/3 on ADDR" log line; the rest of its log goes to the returned channel.
fn start(config: &std::path::Path) -> (Serve, SocketAddr, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_qlb"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--name",
            "b1",
            "--server-id",
            "0a01",
        ])
        .arg("--config")
        .arg(config)
        .args(["--shutdown-timeout", "5s"])
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qlb serve starts");
    let stderr = child.stderr.take().expect("stderr");
    let (lines, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let serve = Serve(child);
    let addr = loop {
        let line = log
            .recv_timeout(Duration::from_secs(20))
            .expect("qlb serve logs its address");
        if let Some((_, addr)) = line.split_once("serving HTTP/3 on ") {
            let addr = addr.split_whitespace().next().unwrap_or_default();
            break addr.parse().expect("an address");
        }
    };
    (serve, addr, log)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("lb.toml");
    std::fs::write(
        &config,
        "listen = [\"127.0.0.1:4433\"]\n\
         cluster_secret = \"00112233445566778899aabbccddeeff\"\n\
         [[quic_lb]]\nconfig_id = 0\nserver_id_len = 2\nnonce_len = 6\n\
         key = \"8f95f09245765f80256934e50c66207f\"\n",
    )
    .expect("write config");
    let (mut serve, addr, log) = start(&config);
    let prober = Prober::new(&Trust::Insecure).expect("prober");

    let healthz = prober
        .probe(addr, "localhost", "/healthz", Duration::from_secs(5))
        .await
        .expect("serving");
    assert_eq!(healthz.status, http::StatusCode::OK);

    let in_flight = tokio::spawn(async move {
        prober
            .probe(addr, "localhost", "/delay/3000", Duration::from_secs(15))
            .await
    });
    // The probe makes a fresh handshake first: leave it ample time to have its request
    // accepted, even on a loaded machine, before the signal (200 ms was seen to fall short).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    sigterm(&serve.0);

    let finished = in_flight
        .await
        .expect("task")
        .expect("the request completes");
    assert_eq!(finished.status, http::StatusCode::OK);
    assert!(finished.elapsed >= Duration::from_millis(3000));

    let status = tokio::task::spawn_blocking(move || {
        let status = serve.0.wait().expect("qlb serve exits");
        (status, serve)
    })
    .await
    .expect("wait")
    .0;
    assert_eq!(status.code(), Some(0), "exit status");
    let rest: Vec<String> = log.try_iter().collect();
    assert!(
        rest.iter().any(|line| line.contains("shutting down")),
        "{rest:#?}"
    );
}
