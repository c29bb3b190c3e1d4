//! A rolling restart under load, done the way docs/operations.md tells operators to
//! ("Draining and deploying backends"): three backends behind one load balancer carry a
//! continuous `qlb load` of `/whoami` over 12 connections, and each backend in turn is
//!
//! 1. drained at the load balancer (`POST /backends/NAME/drain`: no new connections),
//! 2. sent SIGTERM: `qlb serve` sends GOAWAY, finishes the requests in flight and exits,
//! 3. left down for a while (as a deploy takes time; health checks find it down),
//! 4. restarted on the same address with the same server ID,
//! 5. undrained, and waited for until health checks pass on the new process.
//!
//! No request fails: clients move to another connection on GOAWAY and retry the requests the
//! server rejected. The client recycles its connections (`--max-lifetime`), so every
//! restarted backend gets connections, and requests, again. The same holds in GUE mode, where
//! a restarted backend answers back through the load balancer without any state there.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::TestResult;
use support::cluster::{Backend, Cluster, Lb, Mode, Spec};
use support::process::run;

/// How long the load runs: the roll (about 2 s per backend on an idle machine) and a tail in
/// which the restarted backends serve, with room for a loaded CI machine.
const LOAD: Duration = Duration::from_secs(20);

/// Load before the first drain, and after each restart before the next drain.
const SETTLE: Duration = Duration::from_secs(1);

/// How long after its SIGTERM a backend comes back: long enough for health checks to find
/// it down, as they would in a real deploy.
const DOWNTIME: Duration = Duration::from_secs(1);

/// The longest a step (a drain, an exit, a health transition) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the restart of one backend took.
struct Restart {
    name: String,
    /// Its open connections when it got SIGTERM (drained at the load balancer already).
    connections: f64,
    /// From SIGTERM to its exit: its drain.
    drained_in: Duration,
    /// From the restart to passing health checks (undrained meanwhile).
    up_in: Duration,
    /// Client datagrams the load balancer had forwarded to it at the restart.
    packets_before: u64,
}

#[test]
fn a_rolling_restart_under_load_fails_no_request() -> TestResult {
    rolling_restart(Mode::Proxy, false)
}

#[test]
fn gue_mode_a_rolling_restart_under_load_fails_no_request() -> TestResult {
    rolling_restart(Mode::Gue, false)
}

/// The clients resume their sessions with 0-RTT on every replacement connection: no request
/// fails either, and the replacements' first requests go early (the summary counts them).
#[test]
fn a_rolling_restart_under_load_with_0rtt_fails_no_request() -> TestResult {
    rolling_restart(Mode::Proxy, true)
}

fn rolling_restart(mode: Mode, zero_rtt: bool) -> TestResult {
    let mut cluster = Cluster::start(Spec {
        mode,
        ..Spec::checked()
    })?;
    cluster.wait_until_up(STEP_TIMEOUT)?;
    let url = format!("https://{}/whoami", cluster.lbs[0].addr);
    let duration = format!("{}s", LOAD.as_secs());
    let load_started = Instant::now();
    let load = std::thread::spawn(move || {
        run(
            "qlb load",
            Command::new(env!("CARGO_BIN_EXE_qlb"))
                .args([
                    "load",
                    &url,
                    "--insecure",
                    "--connections",
                    "12",
                    "--concurrency",
                    "12",
                    "--duration",
                    &duration,
                    "--max-lifetime",
                    "3s",
                    "--json",
                ])
                .args(zero_rtt.then_some("--0rtt")),
            LOAD + Duration::from_secs(60),
        )
    });

    let mut restarts = Vec::new();
    let Cluster { backends, lbs, .. } = &mut cluster;
    for backend in backends.iter_mut() {
        std::thread::sleep(SETTLE);
        if load.is_finished() {
            break;
        }
        restarts.push(restart(&lbs[0], backend)?);
    }
    let rolled_in = load_started.elapsed();

    let output = load.join().map_err(|_| "the load thread panicked")??;
    let summary: Value = serde_json::from_slice(&output.stdout).map_err(|err| {
        format!(
            "qlb load printed no summary ({err}; {}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    })?;
    eprintln!("qlb load summary: {summary}");
    assert_eq!(
        restarts.len(),
        cluster.backends.len(),
        "the load ended before the roll did ({rolled_in:?} in): the machine is too slow for \
         LOAD = {LOAD:?}"
    );
    assert!(
        rolled_in + SETTLE < LOAD,
        "the roll took {rolled_in:?}, leaving the restarted backends no time to serve"
    );
    let log = String::from_utf8_lossy(&output.stderr);
    let log_tail: Vec<&str> = log.lines().rev().take(30).collect();
    assert_eq!(
        summary["errors"],
        0,
        "failed requests, by kind: {} (\"rejected\": the server refused the request after its \
         final GOAWAY, H3_REQUEST_REJECTED, and so it did the client's one retry); the end of \
         qlb load's log, last line first:\n{}",
        summary["errors_by_kind"],
        log_tail.join("\n")
    );
    assert!(output.status.success(), "qlb load: {}", output.status);
    // Every request was answered by a backend's /whoami.
    let per_backend = summary["per_backend"].as_object().ok_or("per_backend")?;
    let answered: u64 = per_backend.values().filter_map(Value::as_u64).sum();
    assert_eq!(Some(answered), summary["requests"].as_u64(), "{summary}");

    let lb_status = cluster.lbs[0].status()?;
    for (restart, backend) in restarts.iter().zip(&cluster.backends) {
        // The restarted process's own counters: each health check is one handshake and one
        // request, so requests beyond handshakes were the load's (a lower bound on them).
        let requests = backend.metric("qlb_server_requests_total{status=\"200\"}")?;
        let handshakes = backend.metric("qlb_server_handshakes_total{result=\"ok\"}")?;
        let packets =
            support::cluster::backend_entry(&lb_status, &backend.name)?["to_backend"]["packets"]
                .as_u64()
                .unwrap_or_default();
        eprintln!(
            "rolling restart: {}: {} connections open at SIGTERM, exited {:?} later; passed \
             health checks {:?} after its restart; since then served at least {} load \
             requests and got {} client datagrams from the LB",
            restart.name,
            restart.connections,
            restart.drained_in,
            restart.up_in,
            requests - handshakes,
            packets - restart.packets_before,
        );
        assert!(
            requests > handshakes,
            "{} served no load request after its restart ({requests} requests, \
             {handshakes} handshakes)",
            restart.name
        );
    }
    eprintln!(
        "rolling restart (0-RTT: {zero_rtt}): {} requests, 0 errors, {:.0} requests/s, latency \
         p50 {} ms, p99 {} ms, max {} ms; per server ID {}; resumption {}; roll done \
         {rolled_in:?} into the load",
        summary["requests"],
        summary["rps"].as_f64().unwrap_or_default(),
        summary["latency_ms"]["p50"],
        summary["latency_ms"]["p99"],
        summary["latency_ms"]["max"],
        summary["per_backend"],
        summary["resumption"],
    );
    if zero_rtt {
        let accepted = summary["resumption"]["zero_rtt_accepted"].as_u64();
        assert!(accepted > Some(0), "no replacement used 0-RTT: {summary}");
    }
    Ok(())
}

/// Takes `backend` out and back the operator's way (see the module documentation).
fn restart(lb: &Lb, backend: &mut Backend) -> TestResult<Restart> {
    let name = backend.name.clone();
    assert_eq!(lb.drain(&name)?, "draining");
    let connections = backend.metric("qlb_server_active_connections")?;
    let terminated = Instant::now();
    backend.terminate()?;
    let status = backend.wait_stopped(STEP_TIMEOUT)?;
    let drained_in = terminated.elapsed();
    assert!(status.success(), "{name} exited with {status}");

    lb.wait_for_backend(&name, "found down", STEP_TIMEOUT, |status| {
        status["health"]["state"] == "down"
    })?;
    std::thread::sleep(DOWNTIME.saturating_sub(terminated.elapsed()));
    let passed_before = lb.backend_status(&name)?["health"]["checks_passed"]
        .as_u64()
        .ok_or("health.checks_passed")?;
    let restarted = Instant::now();
    backend.restart()?;
    let packets_before = lb.backend_status(&name)?["to_backend"]["packets"]
        .as_u64()
        .ok_or("to_backend.packets")?;
    lb.undrain(&name)?;
    // Up again: checks passed on the new process (none could while it was stopped).
    lb.wait_for_backend(&name, "up and active", STEP_TIMEOUT, |status| {
        status["health"]["state"] == "up"
            && status["effective_state"] == "active"
            && status["health"]["checks_passed"]
                .as_u64()
                .is_some_and(|passed| passed > passed_before)
    })?;
    Ok(Restart {
        name,
        connections,
        drained_in,
        up_in: restarted.elapsed(),
        packets_before,
    })
}
