//! A backend that advertises its own address as its preferred address (RFC 9000 section
//! 9.6, `qlb serve --preferred-address`): ngtcp2's `gtlsclient`, connected through `qlb lb`,
//! moves to it once the handshake is confirmed, so a 20 MB download reaches it directly and
//! the load balancer carries little more than the handshake.

mod support;

use std::time::Duration;

use qlb_testkit::peers::{gtlsclient, gtlsclient_available};
use support::TestResult;
use support::cluster::{Cluster, Spec, backend_entry};
use support::peers::{log_tail, run_gtlsclient};

/// The longest the download may take (a debug build on a loaded 2-core machine).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// The download: about 16,700 datagrams of 1,200 octets from the server, and thousands of
/// acknowledgements from the client, were it to stay on the load balancer's path.
const BODY: usize = 20_000_000;

/// Datagrams through the load balancer the test allows each way: the handshake and the
/// packets in flight while the client moves, with a wide margin, and far below the
/// download's.
const THROUGH_THE_LB: u64 = 1_000;

#[test]
fn ngtcp2_moves_to_the_preferred_address_and_the_load_balancer_carries_only_the_start() -> TestResult
{
    if !gtlsclient_available() {
        return Ok(());
    }
    let cluster = Cluster::start(Spec {
        backends: 1,
        admin: true,
        preferred_address: true,
        ..Spec::default()
    })?;
    let lb = &cluster.lbs[0];
    let downloads = cluster.dir().join("downloads");
    std::fs::create_dir_all(&downloads)?;
    let mut command = gtlsclient(lb.addr, "GET", &format!("/bytes/{BODY}"));
    command.arg(format!("--download={}", downloads.display()));
    let log = run_gtlsclient(&mut command, CLIENT_TIMEOUT)?;

    let body = std::fs::read(downloads.join(BODY.to_string()))?;
    if body.len() != BODY {
        return Err(format!(
            "{} of {BODY} octets arrived; the end of gtlsclient's log, last line first:\n{}",
            body.len(),
            log_tail(&log)
        )
        .into());
    }
    let entry = backend_entry(&lb.status()?, "b1")?;
    let packets = |direction: &str| entry[direction]["packets"].as_u64().unwrap_or(u64::MAX);
    let (to_backend, to_client) = (packets("to_backend"), packets("to_client"));
    let moved = cluster.backends[0].metric("qlb_server_peer_address_changes_total")?;
    let withheld = cluster.backends[0].metric("qlb_server_stateless_resets_withheld_total")?;
    eprintln!(
        "preferred address: {BODY} octets downloaded; through the load balancer {to_backend} \
         datagrams to the backend, {to_client} to the client; client address changes seen by \
         the backend: {moved}; late packets on the old path not reset: {withheld}"
    );
    assert!(
        to_backend < THROUGH_THE_LB && to_client < THROUGH_THE_LB,
        "the client stayed on the load balancer's path: {to_backend} and {to_client} datagrams"
    );
    Ok(())
}
