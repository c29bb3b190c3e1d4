//! `qlb serve` as operators run it: the real binary on loopback, stopped with SIGTERM while a
//! request is in flight. The request completes and the process exits 0. It reads the shared
//! cluster file alone, without the load balancer's sections. With `--gue` it answers an
//! encapsulated datagram encapsulated back to its sender and still serves on `--listen`;
//! `--direct-return` is logged and needs `--gue`. Absurd durations given to it (and to
//! `qlb get` and `qlb load`) are refused naming the flag.

mod support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use qlb_client::{Prober, Trust};
use qlb_testkit::{TestResult, fixtures};
use support::cluster::spawn_serve;
use support::process::run;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_the_request_in_flight_finish_then_exits_zero() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("lb.toml");
    std::fs::write(
        &config,
        format!(
            "listen = [\"127.0.0.1:4433\"]\n\
             cluster_secret = \"00112233445566778899aabbccddeeff\"\n{}",
            fixtures::table(0)
        ),
    )?;
    let (mut serve, addr, _metrics) = spawn_serve("b1", Some("0a01"), "127.0.0.1:0", &config, &[])?;
    let prober = Prober::new(&Trust::Insecure)?;

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
    serve.terminate()?;

    let finished = in_flight
        .await
        .expect("task")
        .expect("the request completes");
    assert_eq!(finished.status, http::StatusCode::OK);
    assert!(finished.elapsed >= Duration::from_millis(3000));

    let status = tokio::task::spawn_blocking(move || {
        let status = serve.wait(Duration::from_secs(20));
        (status, serve)
    })
    .await?;
    let (status, mut serve) = status;
    assert_eq!(status?.code(), Some(0), "exit status");
    serve.wait_for_log("shutting down", Duration::from_secs(1))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_file_without_the_load_balancers_sections_is_enough() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("cluster.toml");
    std::fs::write(
        &config,
        "cluster_secret = \"00112233445566778899aabbccddeeff\"\n\
         [[quic_lb]]\nconfig_id = 0\nserver_id_len = 2\nnonce_len = 6\n\
         key = \"8f95f09245765f80256934e50c66207f\"\n",
    )?;
    let (mut serve, addr, _metrics) = spawn_serve("b1", Some("0a01"), "127.0.0.1:0", &config, &[])?;
    let prober = Prober::new(&Trust::Insecure)?;
    let whoami = prober
        .probe(addr, "localhost", "/whoami", Duration::from_secs(5))
        .await
        .expect("serving");
    assert_eq!(whoami.status, http::StatusCode::OK);
    serve.terminate()?;
    let status = tokio::task::spawn_blocking(move || serve.wait(Duration::from_secs(20))).await?;
    assert_eq!(status?.code(), Some(0), "exit status");
    Ok(())
}

/// Reads the address `qlb serve` logs after `needle` (the end of its first word).
fn logged_addr(serve: &mut support::process::Process, needle: &str) -> TestResult<SocketAddr> {
    let rest = serve.wait_for_log(needle, Duration::from_secs(30))?;
    let word = rest.split_whitespace().next().unwrap_or_default();
    Ok(word.trim_end_matches(';').parse()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gue_datagrams_are_answered_through_the_lb_and_the_plain_socket_still_serves() -> TestResult
{
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, fixtures::table(0))?;
    let (mut serve, addr, _metrics) = spawn_serve(
        "b1",
        Some("0a01"),
        "127.0.0.1:0",
        &config,
        &["--gue", "127.0.0.1:0"],
    )?;
    let gue = logged_addr(&mut serve, "receiving GUE on ")?;
    serve.wait_for_log(
        "replies return through the load balancer",
        Duration::from_secs(1),
    )?;

    // A load balancer's datagram: a Version Negotiation probe (unsupported version, 1,200
    // octets) from a client at 192.0.2.7 to the VIP, encapsulated. The answer comes back to
    // the sender, encapsulated from the VIP to the client.
    let client: SocketAddr = "192.0.2.7:50000".parse()?;
    let vip: SocketAddr = "203.0.113.1:443".parse()?;
    let mut probe = vec![0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 8, 1, 2, 3, 4, 5, 6, 7, 8, 8];
    probe.extend([9; 8]);
    probe.resize(1200, 0);
    let mut packet = Vec::new();
    qlb_gue::encapsulate(&mut packet, client, vip, qlb_gue::Ecn::NotEct, &probe)?;
    let lb = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    lb.send_to(&packet, gue).await?;
    let mut buf = vec![0; 2048];
    let (len, from) =
        tokio::time::timeout(Duration::from_secs(10), lb.recv_from(&mut buf)).await??;
    assert_eq!(from, gue);
    let reply = qlb_gue::decapsulate(&buf[..len])?;
    assert_eq!((reply.source, reply.destination), (vip, client));
    // Version 0 (Version Negotiation), answering the probe's source CID.
    assert_eq!(&reply.payload[1..7], &[0, 0, 0, 0, 8, 9]);

    let prober = Prober::new(&Trust::Insecure)?;
    let healthz = prober
        .probe(addr, "localhost", "/healthz", Duration::from_secs(5))
        .await
        .expect("serving on the plain socket");
    assert_eq!(healthz.status, http::StatusCode::OK);
    serve.terminate()?;
    Ok(())
}

#[test]
fn direct_return_and_gue_sources_are_logged_and_need_gue() -> TestResult {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("cluster.toml");
    std::fs::write(&config, fixtures::table(0))?;
    let (mut serve, _addr, _metrics) = spawn_serve(
        "b1",
        Some("0a01"),
        "127.0.0.1:0",
        &config,
        &[
            "--gue",
            "127.0.0.1:0",
            "--direct-return",
            "--gue-allow",
            "127.0.0.1,10.0.0.0/8",
        ],
    )?;
    serve.wait_for_log(
        "replies return directly from the VIP",
        Duration::from_secs(30),
    )?;
    serve.wait_for_log(
        "accepting GUE only from 127.0.0.1/32, 10.0.0.0/8",
        Duration::from_secs(5),
    )?;
    serve.terminate()?;

    let stderr = refused_serve(&["--gue", "127.0.0.1:0", "--gue-allow", "10.0.0.0/33"])?;
    assert!(
        stderr.contains("--gue-allow") && stderr.contains("between 0 and 32"),
        "{stderr}"
    );
    let stderr = refused_serve(&["--direct-return"])?;
    assert!(stderr.contains("--gue"), "{stderr}");
    Ok(())
}

/// Runs `qlb serve` with `extra` after a valid listener, server ID and cluster file, expects
/// it to refuse to start, and returns what it said.
fn refused_serve(extra: &[&str]) -> TestResult<String> {
    let output = run(
        "serve",
        Command::new(env!("CARGO_BIN_EXE_qlb"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--server-id",
                "0a01",
                "--config",
                "cluster.toml",
            ])
            .args(extra),
        Duration::from_secs(20),
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        !output.status.success(),
        "qlb serve {extra:?} started: {stderr}"
    );
    Ok(stderr)
}

#[test]
fn absurd_durations_are_refused_naming_the_flag() -> TestResult {
    for (command, flag, value) in [
        ("serve", "--max-connection-age", "99999999999h"),
        ("serve", "--max-connection-age-grace", "9000h"),
        ("serve", "--idle-timeout", "25h"),
        ("serve", "--shutdown-timeout", "1000000000h"),
        ("get", "--timeout", "1000000000h"),
        ("load", "--max-lifetime", "99999999999h"),
        ("load", "--duration", "99999999999h"),
        ("load", "--migrate-every", "25h"),
        ("load", "--timeout", "25h"),
    ] {
        let output = run(
            command,
            Command::new(env!("CARGO_BIN_EXE_qlb"))
                .args([command, flag, value])
                .args((command != "serve").then_some("https://127.0.0.1:9/")),
            Duration::from_secs(20),
        )?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{command} {flag} {value}: accepted"
        );
        assert!(stderr.contains(flag), "{command} {flag} {value}: {stderr}");
    }
    Ok(())
}
