//! Session resumption and 0-RTT against real qlb-server backends on loopback: a client's
//! replacement connections resume and send their GETs as early data, which the server
//! serves early; a POST waits for the handshake; a ticket the server does not know (it
//! restarted) falls back to a full handshake and the request still succeeds.

mod support;

use std::time::Duration;

use qlb_client::{BackendList, Client, ClientSnapshot};
use qlb_testkit::{TestResult, eventually};
use support::{Backend, SOON, client, whoami};

/// One series of `server`'s metrics (0 if absent).
fn server_metric(backend: &Backend, series: &str) -> TestResult<f64> {
    let mut registry = prometheus_client::registry::Registry::default();
    backend.server.metrics().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0))
}

fn numbers(client: &Client, backend: &Backend) -> TestResult<(u64, u64, u64)> {
    let snapshot: ClientSnapshot = client.snapshot();
    let b = snapshot.backend(backend.addr).ok_or("the backend")?;
    Ok((b.resumed, b.zero_rtt_accepted, b.zero_rtt_rejected))
}

const EARLY_SERVED: &str = "qlb_server_early_requests_total{outcome=\"served\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacement_connections_resume_and_send_gets_as_0rtt() -> TestResult {
    let backend = Backend::start_with("a", "0001", "127.0.0.1:0".parse()?, |builder| {
        builder.cluster_secret(b"the cluster's secret")
    })?;
    // Idle connections close after 200 ms: each request after that opens a new one.
    let client = client(backend.addr)
        .idle_timeout(Duration::from_millis(200))
        .zero_rtt(true)
        .build()?;
    assert_eq!(whoami(&client).await?, "a");
    assert_eq!(
        numbers(&client, &backend)?,
        (0, 0, 0),
        "a full handshake first"
    );
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(whoami(&client).await?, "a");
    }
    eventually(SOON, "0-RTT accepted on a resumed connection", || {
        numbers(&client, &backend).is_ok_and(|(resumed, accepted, _)| resumed >= 1 && accepted >= 1)
    })
    .await?;
    let (resumed, accepted, rejected) = numbers(&client, &backend)?;
    assert_eq!(rejected, 0);
    assert_eq!(resumed, accepted + rejected);
    assert!(
        server_metric(&backend, EARLY_SERVED)? >= 1.0,
        "the server served no request early"
    );

    // A POST on a resuming connection waits for the handshake: never refused as too early.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let response = client
        .send(http::Request::post("/echo").body(String::from("not early"))?)
        .await?;
    assert_eq!(response.status(), http::StatusCode::OK);
    assert_eq!(
        server_metric(
            &backend,
            "qlb_server_early_requests_total{outcome=\"too_early\"}"
        )?,
        0.0
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_the_server_does_not_know_falls_back_to_a_full_handshake() -> TestResult {
    // Two servers under one name: each keeps its own single-use sessions.
    let servers = ["a", "b"].map(|name| {
        Backend::start_with(
            name,
            "0001",
            "127.0.0.1:0".parse().expect("addr"),
            |builder| builder.cluster_secret(b"the cluster's secret"),
        )
    });
    let [a, b] = servers;
    let (a, b) = (a?, b?);
    // Round robin, a new connection per request: each resumes with the other's ticket.
    let client = client(BackendList::new(vec![a.addr, b.addr]))
        .idle_timeout(Duration::from_millis(200))
        .zero_rtt(true)
        .build()?;
    let mut answered = Vec::new();
    for _ in 0..4 {
        answered.push(whoami(&client).await?);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(answered.iter().any(|name| name == "a") && answered.iter().any(|name| name == "b"));
    let (mut resumed, mut accepted, mut rejected) = (0, 0, 0);
    for backend in [&a, &b] {
        let (r, acc, rej) = numbers(&client, backend)?;
        (resumed, accepted, rejected) = (resumed + r, accepted + acc, rejected + rej);
    }
    assert!(resumed >= 1, "the client tried its tickets");
    assert!(rejected >= 1, "refused early data: {answered:?}");
    assert_eq!(resumed, accepted + rejected);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_rtt_off_by_default_sends_nothing_early() -> TestResult {
    let backend = Backend::start_with("a", "0001", "127.0.0.1:0".parse()?, |builder| {
        builder.cluster_secret(b"the cluster's secret")
    })?;
    let client = client(backend.addr)
        .idle_timeout(Duration::from_millis(200))
        .build()?;
    for _ in 0..3 {
        assert_eq!(whoami(&client).await?, "a");
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(numbers(&client, &backend)?, (0, 0, 0));
    assert_eq!(server_metric(&backend, EARLY_SERVED)?, 0.0);
    Ok(())
}
