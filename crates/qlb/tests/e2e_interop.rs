//! Third-party clients through `qlb lb` to `qlb serve` backends, all real processes on
//! loopback, in proxy mode and in GUE mode (the backends decapsulate and answer back through
//! the load balancer): ngtcp2's `gtlsclient` moving to a new local address mid-transfer (with
//! and without path validation) stays on its backend, and aioquic's connections spread over
//! the backends with every request of one connection answered by one backend.

mod support;

use std::time::{Duration, Instant};

use qlb_testkit::peers::{aioquic_available, gtlsclient_available};
use support::TestResult;
use support::cluster::{Cluster, Mode, Spec};
use support::peers::{Echo, aioquic_whoami, handshake_times, log_tail, run_gtlsclient};

/// The longest a client may run (a debug build on a loaded 2-core machine).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// Octets uploaded to `/echo` and downloaded back.
const TRANSFER: usize = 20_000_000;

#[test]
fn ngtcp2_changing_its_local_address_mid_transfer_stays_on_one_backend() -> TestResult {
    ngtcp2_moves_mid_transfer(Mode::Proxy, false, &[])
}

#[test]
fn gue_mode_ngtcp2_changing_its_local_address_mid_transfer_stays_on_one_backend() -> TestResult {
    ngtcp2_moves_mid_transfer(Mode::Gue, false, &[])
}

#[test]
fn gue_mode_ngtcp2_nat_rebinding_mid_transfer_stays_on_one_backend() -> TestResult {
    ngtcp2_moves_mid_transfer(Mode::Gue, false, &["--nat-rebinding"])
}

/// IPv6 inner headers both ways, and the backend sees the client's IPv6 address change.
#[test]
fn gue_mode_over_ipv6_ngtcp2_changing_its_local_address_mid_transfer_stays_on_one_backend()
-> TestResult {
    ngtcp2_moves_mid_transfer(Mode::Gue, true, &[])
}

#[test]
fn ngtcp2_nat_rebinding_mid_transfer_stays_on_one_backend() -> TestResult {
    ngtcp2_moves_mid_transfer(Mode::Proxy, false, &["--nat-rebinding"])
}

/// gtlsclient uploads [`TRANSFER`] octets (over IPv6 loopback if `ipv6`) to `/echo` through the load balancer and downloads
/// them back; 50 ms after the handshake it moves to a new local port (`--change-local-addr`,
/// plus `extra`), so the load balancer sees a new client address and must route by
/// connection ID to the same backend. In GUE mode the backend sees the client's own address
/// change.
fn ngtcp2_moves_mid_transfer(mode: Mode, ipv6: bool, extra: &[&str]) -> TestResult {
    if !gtlsclient_available() {
        return Ok(());
    }
    let cluster = Cluster::start(Spec {
        mode,
        ipv6,
        ..Spec::default()
    })?;
    let echo = Echo::new(cluster.dir(), TRANSFER)?;
    let mut options = vec!["--change-local-addr=50ms"];
    options.extend_from_slice(extra);

    let started = Instant::now();
    let log = run_gtlsclient(
        &mut echo.gtlsclient(cluster.lbs[0].addr, &options),
        CLIENT_TIMEOUT,
    )?;
    let elapsed = started.elapsed();
    assert!(
        log.contains("Changing local address"),
        "gtlsclient never logged that it moved"
    );
    if let Err(err) = echo.check() {
        return Err(format!(
            "{err}; the end of gtlsclient's log, last line first:\n{}",
            log_tail(&log)
        )
        .into());
    }

    let served = cluster.sole_server()?;
    let moves = served.client_address_changes()?;
    eprintln!(
        "gtlsclient {mode:?} {extra:?} (IPv6: {ipv6}): {} MB up and back through the load balancer in {elapsed:?} \
         ({:.1} MB/s each way); served by {} alone, which saw the client's address \
         change {moves} time(s)",
        TRANSFER / 1_000_000,
        TRANSFER as f64 / 1e6 / elapsed.as_secs_f64(),
        served.name,
    );
    Ok(())
}

/// aioquic: 20 concurrent connections, 3 `/whoami` each, through the load balancer. Their
/// Initials carry random connection IDs, so the load balancer's fallback (Maglev on the
/// DCID) spreads them: every backend gets some (all three do with probability
/// 1 - 3 (2/3)^20 > 0.999), and every request of a connection reaches that connection's
/// backend.
#[test]
fn aioquic_connections_spread_over_the_backends_and_each_keeps_its_backend() -> TestResult {
    aioquic_connections_spread(Mode::Proxy)
}

#[test]
fn gue_mode_aioquic_connections_spread_over_the_backends_and_each_keeps_its_backend() -> TestResult
{
    aioquic_connections_spread(Mode::Gue)
}

fn aioquic_connections_spread(mode: Mode) -> TestResult {
    if !aioquic_available() {
        return Ok(());
    }
    const CONNECTIONS: usize = 20;
    const REQUESTS: usize = 3;
    let cluster = Cluster::start(Spec {
        mode,
        ..Spec::default()
    })?;
    let connections = aioquic_whoami(
        cluster.lbs[0].addr,
        CONNECTIONS,
        REQUESTS,
        false,
        CLIENT_TIMEOUT,
    )?;
    assert_eq!(connections.len(), CONNECTIONS);
    let per_backend = cluster.connections_per_backend(&connections, REQUESTS)?;
    eprintln!(
        "aioquic ({mode:?}): {CONNECTIONS} connections x {REQUESTS} requests, connections per backend: \
         {per_backend:?}; {}",
        handshake_times(&connections)
    );
    assert!(
        per_backend.values().all(|&n| n > 0),
        "a backend got no connection: {per_backend:?}"
    );
    Ok(())
}
