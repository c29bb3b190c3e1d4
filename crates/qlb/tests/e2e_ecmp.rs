//! Two `qlb lb` instances with the same backends and QUIC-LB configuration, and a relay in
//! front that sends every client's datagrams to them alternately, handshake included (as if
//! an ECMP change moved the client back and forth): connections still work, each on one
//! backend, because both instances make the same choice for a handshake (Maglev on the
//! client's DCID) and route the rest by connection ID.
//!
//! The backends see each connection's address flip between the two load balancers'
//! upstream sockets (proxy mode). quinn follows an established connection with a path
//! validation each time, but during the handshake it discards datagrams from any address but
//! the first: a ClientHello split over two datagrams loses its second half at the backend and
//! the client must retransmit it (one probe timeout) before the handshake can finish. The
//! tests print handshake times through the relay and, as a baseline, through one load
//! balancer.

mod support;

use std::time::{Duration, Instant};

use qlb_testkit::peers::{aioquic_available, gtlsclient_available};
use support::TestResult;
use support::cluster::{Cluster, Spec};
use support::peers::{Echo, aioquic_whoami, handshake_times, run_gtlsclient};
use support::relay::{EcmpRelay, Sent};

/// The longest the client may run (a debug build on a loaded 2-core machine).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn one_connection_alternating_between_two_load_balancers_works() -> TestResult {
    alternating_connections_keep_their_backend(1, 10, false)
}

/// Half of the handshakes begin on each load balancer, and every ClientHello takes two
/// datagrams with the client's DCID, one through each load balancer: both must send them to
/// the same backend.
#[test]
fn concurrent_connections_alternating_between_two_load_balancers_each_keep_their_backend()
-> TestResult {
    alternating_connections_keep_their_backend(12, 3, true)
}

/// ngtcp2 uploads 5 MB to `/echo` and downloads them back through the relay: thousands of
/// datagrams each way alternate between the load balancers, and the echo arrives intact
/// from the one backend that had the connection.
#[test]
fn a_transfer_alternating_between_two_load_balancers_arrives_intact() -> TestResult {
    if !gtlsclient_available() {
        return Ok(());
    }
    let (cluster, relay) = two_load_balancers()?;
    let echo = Echo::new(cluster.dir(), 5_000_000)?;
    let started = Instant::now();
    run_gtlsclient(
        &mut echo.gtlsclient(relay.addr, &["--quiet"]),
        CLIENT_TIMEOUT,
    )?;
    let elapsed = started.elapsed();
    echo.check()?;
    let served = cluster.sole_server()?;
    let clients = relay.clients();
    eprintln!(
        "ECMP: {} MB up and back in {elapsed:?}, the client's datagrams through LB1, LB2: \
         {:?}; served by {} alone",
        echo.size() / 1_000_000,
        clients.iter().map(|c| c.datagrams).collect::<Vec<_>>(),
        served.name,
    );
    alternated(&clients)
}

/// `connections` concurrent aioquic connections through the relay, `requests` `/whoami`
/// each: all complete, each on one backend.
fn alternating_connections_keep_their_backend(
    connections: usize,
    requests: usize,
    split_hello: bool,
) -> TestResult {
    if !aioquic_available() {
        return Ok(());
    }
    let (cluster, relay) = two_load_balancers()?;
    let answers = aioquic_whoami(
        relay.addr,
        connections,
        requests,
        split_hello,
        CLIENT_TIMEOUT,
    )?;
    let per_backend = cluster.connections_per_backend(&answers, requests)?;
    let clients = relay.clients();
    assert_eq!(clients.len(), connections);
    alternated(&clients)?;
    let started_on = |lb| clients.iter().filter(|c| c.first == lb).count();
    let started = [started_on(0), started_on(1)];
    assert_eq!(started, [connections.div_ceil(2), connections / 2]);
    // Sampled by the backends when a request arrives and when a connection ends.
    let flips = cluster.metric_per_backend("qlb_server_peer_address_changes_total")?;
    // The same clients through one load balancer, after the checks above (these
    // connections add handshakes of their own).
    let baseline = aioquic_whoami(
        cluster.lbs[0].addr,
        connections,
        1,
        split_hello,
        CLIENT_TIMEOUT,
    )?;
    let datagrams: Vec<[u64; 2]> = clients.iter().map(|c| c.datagrams).collect();
    eprintln!(
        "ECMP: {connections} connection(s) x {requests} requests (split ClientHello: \
         {split_hello}), connections per backend: {per_backend:?}; handshakes begun on LB1, \
         LB2: {started:?}; datagrams through LB1, LB2 per connection: {datagrams:?}; client \
         address changes seen per backend: {flips:?}; through the relay: {}; through LB1 \
         alone: {}",
        handshake_times(&answers),
        handshake_times(&baseline),
    );
    Ok(())
}

/// Three backends, two load balancers, and the relay alternating between them.
fn two_load_balancers() -> TestResult<(Cluster, EcmpRelay)> {
    let cluster = Cluster::start(Spec {
        lbs: 2,
        ..Spec::default()
    })?;
    let relay = EcmpRelay::start([cluster.lbs[0].addr, cluster.lbs[1].addr])?;
    Ok((cluster, relay))
}

/// Every client's datagrams went through both load balancers in turn, handshake included
/// (its first two datagrams took different ones).
fn alternated(clients: &[Sent]) -> TestResult {
    for client in clients {
        let [a, b] = client.datagrams;
        if a < 2 || b < 2 || a.abs_diff(b) > 1 {
            return Err(format!("not alternated: {clients:?}").into());
        }
    }
    Ok(())
}
