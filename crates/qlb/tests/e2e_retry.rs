//! Retry offload with `mode = "always"` (and `"above"` a threshold), all real processes on loopback: `qlb lb` answers
//! every token-less Initial with a Retry whose SCID routes to a backend, and qlb-client
//! (the test kit's H3Client, and `qlb get`), ngtcp2's `gtlsclient` and aioquic complete their
//! handshakes and requests through it with `qlb serve` backends. The load balancer's counters
//! show the Retries and the valid tokens; the backends accepting the tokens (quinn checks the
//! address and age, and sets the ODCID and RSCID transport parameters the clients verify,
//! RFC 9000 section 7.3) is what lets the handshakes complete at all.

mod support;

use std::time::Duration;

use qlb_testkit::H3Client;
use qlb_testkit::peers::{aioquic_available, gtlsclient_available};
use serde_json::Value;
use support::TestResult;
use support::cluster::{Cluster, Spec};
use support::peers::{Echo, aioquic_whoami, run_gtlsclient};
use support::process::qlb_get_json;

/// The longest a client may run (a debug build on a loaded 2-core machine).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

fn retrying_cluster() -> TestResult<Cluster> {
    Cluster::start(Spec {
        backends: 2,
        workers: 1,
        admin: true,
        retry: Some("mode = \"always\""),
        ..Spec::default()
    })
}

/// A token-less v1 Initial with a random DCID, padded to 1200 octets, from no real client.
fn tokenless_initial() -> Vec<u8> {
    let mut initial = vec![0xc0, 0, 0, 0, 1, 8];
    initial.extend_from_slice(&rand::random::<[u8; 8]>());
    initial.extend_from_slice(&[0, 0, 0x44, 0x9e]);
    initial.resize(1200, 0);
    initial
}

/// The load balancer's Retry counters.
fn retry_counts(cluster: &Cluster) -> TestResult<Value> {
    Ok(cluster.lbs[0].status()?["retry"].clone())
}

/// Handshakes the backends completed, in all.
fn backend_handshakes(cluster: &Cluster) -> TestResult<f64> {
    Ok(cluster
        .metric_per_backend("qlb_server_handshakes_total{result=\"ok\"}")?
        .iter()
        .map(|(_, count)| count)
        .sum())
}

#[test]
fn qlb_clients_are_retried_by_the_lb_and_complete_requests() -> TestResult {
    let cluster = retrying_cluster()?;
    let lb = cluster.lbs[0].addr;
    let runtime = tokio::runtime::Runtime::new()?;
    let backend = runtime.block_on(async {
        let config = qlb_client::Trust::Insecure.client_config()?;
        let mut client = H3Client::connect_with(lb, config).await?;
        let first = client.backend().await?;
        assert_eq!(client.backend().await?, first);
        TestResult::Ok(first)
    })?;
    qlb_get_json(&format!("https://{lb}/whoami"), |c| c, CLIENT_TIMEOUT)?;
    let counts = retry_counts(&cluster)?;
    eprintln!("retry counters after two clients: {counts}; first served by {backend}");
    assert_eq!(counts["sent"], 2, "{counts}");
    // Every Initial after a Retry carries the token: two or more per connection.
    assert!(counts["tokens_valid"].as_u64() >= Some(2), "{counts}");
    assert_eq!(counts["tokens_invalid"], 0, "{counts}");
    assert_eq!(backend_handshakes(&cluster)?, 2.0);
    Ok(())
}

#[test]
fn ngtcp2_is_retried_by_the_lb_and_completes_a_transfer() -> TestResult {
    if !gtlsclient_available() {
        return Ok(());
    }
    let cluster = retrying_cluster()?;
    let echo = Echo::new(cluster.dir(), 100_000)?;
    run_gtlsclient(
        &mut echo.gtlsclient(cluster.lbs[0].addr, &[]),
        CLIENT_TIMEOUT,
    )?;
    echo.check()?;
    let counts = retry_counts(&cluster)?;
    eprintln!("gtlsclient: retry counters {counts}");
    assert!(counts["sent"].as_u64() >= Some(1), "{counts}");
    assert!(counts["tokens_valid"].as_u64() >= Some(1), "{counts}");
    assert_eq!(counts["tokens_invalid"], 0, "{counts}");
    Ok(())
}

#[test]
fn aioquic_is_retried_by_the_lb_and_each_connection_keeps_its_backend() -> TestResult {
    if !aioquic_available() {
        return Ok(());
    }
    const CONNECTIONS: usize = 4;
    const REQUESTS: usize = 2;
    let cluster = retrying_cluster()?;
    let connections = aioquic_whoami(
        cluster.lbs[0].addr,
        CONNECTIONS,
        REQUESTS,
        false,
        CLIENT_TIMEOUT,
    )?;
    // Also checks that the backends counted one handshake per connection.
    let per_backend = cluster.connections_per_backend(&connections, REQUESTS)?;
    let counts = retry_counts(&cluster)?;
    eprintln!("aioquic: connections per backend {per_backend:?}, retry counters {counts}");
    assert_eq!(counts["sent"], CONNECTIONS, "{counts}");
    assert!(
        counts["tokens_valid"].as_u64() >= Some(CONNECTIONS as u64),
        "{counts}"
    );
    assert_eq!(counts["tokens_invalid"], 0, "{counts}");
    Ok(())
}

/// A flood of token-less Initials (random DCIDs, from a socket that never answers the
/// Retries, as spoofed sources would not) reaches no backend and opens no flow, while a real
/// client connects and is served.
#[test]
fn an_initial_flood_reaches_no_backend_and_real_clients_still_connect() -> TestResult {
    const FLOOD: usize = 2_000;
    let cluster = retrying_cluster()?;
    let lb = cluster.lbs[0].addr;
    let flooder = std::net::UdpSocket::bind("127.0.0.1:0")?;
    for _ in 0..FLOOD {
        flooder.send_to(&tokenless_initial(), lb)?;
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let config = qlb_client::Trust::Insecure.client_config()?;
        let mut client = H3Client::connect_with(lb, config).await?;
        client.backend().await?;
        TestResult::Ok(())
    })?;
    let status = cluster.lbs[0].status()?;
    let (retry, flows) = (&status["retry"], &status["flows"]);
    let handshakes = backend_handshakes(&cluster)?;
    let failed: f64 = cluster
        .metric_per_backend("qlb_server_handshakes_total{result=\"failed\"}")?
        .iter()
        .map(|(_, count)| count)
        .sum();
    eprintln!(
        "flood of {FLOOD} Initials: retry counters {retry}, flows {flows}; backends: \
         {handshakes} handshakes ok, {failed} failed"
    );
    // The socket buffer may drop some of the flood; the client's Initial adds one Retry.
    assert!(retry["sent"].as_u64() > Some(FLOOD as u64 / 2), "{retry}");
    assert_eq!((handshakes, failed), (1.0, 0.0));
    assert_eq!(flows["created"], 1, "{flows}");
    Ok(())
}

/// `mode = "above"`: below the threshold clients are not retried; a burst of token-less
/// Initials above it turns Retries on, so the next client is retried (and still served); a
/// quiet second and more later they are off again.
#[test]
fn above_the_threshold_retries_start_with_a_burst_and_stop_when_it_is_over() -> TestResult {
    const THRESHOLD: usize = 50;
    const BURST: usize = 400;
    let cluster = Cluster::start(Spec {
        backends: 2,
        workers: 1,
        admin: true,
        retry: Some("mode = \"above\"\nthreshold = 50"),
        ..Spec::default()
    })?;
    let lb = cluster.lbs[0].addr;
    let runtime = tokio::runtime::Runtime::new()?;
    let connect = || {
        runtime.block_on(async {
            let config = qlb_client::Trust::Insecure.client_config()?;
            let mut client = H3Client::connect_with(lb, config).await?;
            client.backend().await?;
            TestResult::Ok(())
        })
    };
    connect()?;
    let quiet = retry_counts(&cluster)?;
    assert_eq!(quiet["sent"], 0, "no Retry below the threshold: {quiet}");

    let flooder = std::net::UdpSocket::bind("127.0.0.1:0")?;
    for _ in 0..BURST {
        flooder.send_to(&tokenless_initial(), lb)?;
    }
    // Within the burst's second or the next, a client is retried.
    connect()?;
    let burst = retry_counts(&cluster)?;
    eprintln!("after a burst of {BURST} Initials (threshold {THRESHOLD}/s): {burst}");
    assert!(burst["sent"].as_u64() > Some(0), "{burst}");
    assert!(
        burst["tokens_valid"].as_u64() >= Some(1),
        "the client was retried: {burst}"
    );

    // Retries stay on for a whole quiet second after the burst's, then stop.
    std::thread::sleep(Duration::from_millis(2_500));
    connect()?;
    let after = retry_counts(&cluster)?;
    eprintln!("after a quiet while: {after}");
    assert_eq!(after["sent"], burst["sent"], "no Retry once quiet: {after}");
    assert_eq!(after["tokens_invalid"], 0, "{after}");
    assert_eq!(backend_handshakes(&cluster)?, 3.0);
    Ok(())
}
