//! Third-party peers: aioquic's HTTP/3 client (Python) and ngtcp2's gtlsclient (C). On CI a
//! missing peer fails these tests; elsewhere they are skipped with a loud message.

mod support;

use std::process::Stdio;
use std::time::Duration;

use qlb_testkit::peers::{aioquic, aioquic_available, gtlsclient, gtlsclient_available};
use serde_json::Value;
use support::hold::start_with_hold;
use support::{TestResult, builder, decoder, start_builtin};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

const PEER_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn aioquic_gets_whoami_and_every_cid_it_was_issued_routes_to_the_server() -> TestResult {
    if !aioquic_available() {
        return Ok(());
    }
    let running = start_builtin(builder("0d01").name("peer-test"))?;
    let output = Command::from(aioquic("issued-cids", running.addr))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PEER_TIMEOUT, output).await??;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "aioquic client failed: {stderr}");
    let reply: Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(reply["status"], 200, "{reply}");
    let whoami: Value = serde_json::from_str(reply["body"].as_str().ok_or("body")?)?;
    assert_eq!(whoami["server_id"], "0d01");
    assert_eq!(whoami["name"], "peer-test");

    // The handshake CID and the spare ones (NEW_CONNECTION_ID): enough to migrate several
    // times, and every one routes to this server.
    let cids = reply["issued_cids"].as_array().ok_or("issued_cids")?;
    assert!(cids.len() >= 5, "only {} CIDs issued: {reply}", cids.len());
    let decoder = decoder();
    for cid in cids {
        let cid = hex::decode(cid.as_str().ok_or("hex")?)?;
        assert_eq!(cid.len(), 9);
        assert_eq!(decoder.decode(&cid)?.server_id.to_string(), "0d01");
    }
    assert_eq!(
        running.metric("qlb_server_cids_issued_total"),
        cids.len() as f64
    );
    Ok(())
}

/// aioquic ignores GOAWAY, so it shows what the server enforces: during a shutdown its new
/// connection is refused, its request sent after the final GOAWAY is reset with
/// H3_REQUEST_REJECTED, its request in flight completes, and the connection then closes
/// with H3_NO_ERROR.
#[tokio::test]
async fn aioquic_request_in_flight_at_shutdown_completes_while_new_ones_are_refused() -> TestResult
{
    if !aioquic_available() {
        return Ok(());
    }
    let (running, mut hold) = start_with_hold(builder("0d02"))?;
    let mut peer = Command::from(aioquic("drain", running.addr))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut stdin = peer.stdin.take().ok_or("stdin")?;
    let mut lines = BufReader::new(peer.stdout.take().ok_or("stdout")?).lines();
    let mut next_line = async || -> TestResult<Value> {
        let line = tokio::time::timeout(PEER_TIMEOUT, lines.next_line()).await??;
        Ok(serde_json::from_str(&line.ok_or("aioquic client exited")?)?)
    };

    assert_eq!(next_line().await?["event"], "started");
    hold.started().await?;
    let shutdown = running.shutdown_in_background(Duration::from_secs(30));
    running.final_goaways_sent(1.0).await?;
    stdin.write_all(b"go\n").await?;
    assert_eq!(next_line().await?["event"], "late request sent");
    hold.release();
    let result = next_line().await?;

    let new_connection = result["new_connection"].as_str().ok_or("new_connection")?;
    assert!(new_connection.starts_with("refused"), "{result}");
    assert_eq!(result["late"]["reset"], 0x10b, "{result}");
    assert_eq!(result["held"]["status"], 200, "{result}");
    assert_eq!(result["held"]["body"], "draining", "{result}");
    assert_eq!(result["closed_with"], 0x100, "{result}");
    tokio::time::timeout(Duration::from_secs(10), shutdown).await??;
    assert!(
        tokio::time::timeout(PEER_TIMEOUT, peer.wait())
            .await??
            .success()
    );
    Ok(())
}

/// ngtcp2's client uploads 20 MB to `/echo` and downloads the echo, and 50 ms after the
/// handshake moves to a new local port without telling the server (`--nat-rebinding`).
#[tokio::test]
async fn ngtcp2_completes_a_transfer_across_a_nat_rebinding() -> TestResult {
    if !gtlsclient_available() {
        return Ok(());
    }
    let running = start_builtin(builder("0d03"))?;
    let dir = tempfile::tempdir()?;
    let payload: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let upload = dir.path().join("upload");
    std::fs::write(&upload, &payload)?;
    let downloads = dir.path().join("downloads");
    std::fs::create_dir(&downloads)?;
    let port = running.addr.port().to_string();
    let output = Command::new("gtlsclient")
        .args([
            "--no-quic-dump",
            "--no-http-dump",
            "--exit-on-all-streams-close",
        ])
        .args([
            "--change-local-addr=50ms",
            "--nat-rebinding",
            "--timeout=20s",
            "-m",
            "POST",
        ])
        .arg("-d")
        .arg(&upload)
        .arg(format!("--download={}", downloads.display()))
        .args([
            "127.0.0.1",
            &port,
            &format!("https://localhost:{port}/echo"),
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PEER_TIMEOUT, output).await??;
    // gtlsclient logs to stderr.
    let log = String::from_utf8_lossy(&output.stderr);
    let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    assert!(
        output.status.success(),
        "gtlsclient failed; last lines (reversed):\n{tail}"
    );
    assert!(
        log.contains("Changing local address"),
        "no rebinding happened:\n{tail}"
    );
    let echoed = std::fs::read(downloads.join("echo"))?;
    assert!(
        echoed == payload,
        "echo differs: {} of {} octets",
        echoed.len(),
        payload.len()
    );
    // Counted when the server's side of the connection ends, just after the client exits.
    running
        .wait_for_metric(
            "qlb_server_peer_address_changes_total",
            1.0,
            Duration::from_secs(5),
        )
        .await?;
    running
        .expect_metric("qlb_server_requests_total{status=\"200\"}", 1.0)
        .await?;
    Ok(())
}

/// gtlsclient run against `addr` with `method` on `path`, keeping its session in `dir`
/// (`--session-file`, `--tp-file`), so that a second run resumes with 0-RTT; returns its log.
async fn gtlsclient_resuming(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
) -> TestResult<String> {
    let mut command = gtlsclient(addr, method, path);
    command
        .arg(format!("--session-file={}", dir.join("session").display()))
        .arg(format!("--tp-file={}", dir.join("tp").display()));
    let output = Command::from(command).kill_on_drop(true).output();
    let output = tokio::time::timeout(PEER_TIMEOUT, output).await??;
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "gtlsclient failed: {log}");
    Ok(log)
}

/// With `EarlyDataPolicy::Hold`, a POST sent as 0-RTT early data waits for the handshake
/// and is answered 200, not 425; a PUT the application marked replay-safe is served early.
#[tokio::test]
async fn ngtcp2_early_post_is_held_until_the_handshake_and_replay_safe_requests_run_early()
-> TestResult {
    if !gtlsclient_available() {
        return Ok(());
    }
    let running = start_builtin(
        builder("0d04")
            .cluster_secret(b"cluster secret")
            .early_data_policy(qlb_server::EarlyDataPolicy::Hold)
            .replay_safe(|method, uri| method == http::Method::PUT && uri.path() == "/echo"),
    )?;
    let dir = tempfile::tempdir()?;
    let rejected = "Early data was rejected by server";
    let log = gtlsclient_resuming(dir.path(), running.addr, "GET", "/whoami").await?;
    assert!(!log.contains(rejected));
    let log = gtlsclient_resuming(dir.path(), running.addr, "POST", "/echo").await?;
    assert!(!log.contains(rejected), "early data accepted");
    assert!(log.contains("[:status: 200]"), "held, then served:\n{log}");
    let early = |outcome: &str| {
        running.metric(&format!(
            "qlb_server_early_requests_total{{outcome=\"{outcome}\"}}"
        ))
    };
    assert_eq!(
        (early("held"), early("served"), early("too_early")),
        (1.0, 1.0, 0.0)
    );
    let log = gtlsclient_resuming(dir.path(), running.addr, "PUT", "/echo").await?;
    assert!(!log.contains(rejected), "early data accepted");
    assert_eq!((early("held"), early("served")), (1.0, 2.0));
    assert_eq!(running.metric("qlb_server_zero_rtt_connections_total"), 2.0);
    Ok(())
}
