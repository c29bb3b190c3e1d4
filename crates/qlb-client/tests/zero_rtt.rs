//! Session resumption and 0-RTT against real qlb-server backends on loopback: a client's
//! replacement connections resume and send their GETs as early data, which the server
//! serves early, on another server of the cluster too; a POST waits for the handshake; a
//! ticket of another cluster falls back to a full handshake and the request still succeeds.

mod support;

use std::time::Duration;

use qlb_client::{BackendList, Client, ClientSnapshot, ReplaySafe};
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
    // Whether the server reads an early GET before the handshake completes (and so serves
    // it early) is a race on loopback: reconnect until it has, a bounded number of times.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(whoami(&client).await?, "a");
        if server_metric(&backend, EARLY_SERVED)? >= 1.0 {
            break;
        }
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
    assert_eq!(server_metric(&backend, TOO_EARLY)?, 0.0);
    Ok(())
}

/// Three servers under one name: `a` and `b` of one cluster, `c` of another.
fn three_servers() -> TestResult<[Backend; 3]> {
    let start = |name: &str, secret: &'static [u8]| {
        Backend::start_with(name, "0001", "127.0.0.1:0".parse()?, |builder| {
            builder.cluster_secret(secret)
        })
    };
    Ok([
        start("a", b"the cluster's secret")?,
        start("b", b"the cluster's secret")?,
        start("c", b"another cluster's secret")?,
    ])
}

/// The sums of [`numbers`] over `backends`.
fn total(client: &Client, backends: &[&Backend]) -> TestResult<(u64, u64, u64)> {
    backends.iter().try_fold((0, 0, 0), |(r, a, j), backend| {
        let (r2, a2, j2) = numbers(client, backend)?;
        Ok((r + r2, a + a2, j + j2))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_server_of_the_cluster_takes_the_ticket_with_0rtt_another_cluster_does_not()
-> TestResult {
    let [a, b, c] = three_servers()?;
    // Round robin, a new connection per request: each resumes with the other's ticket.
    let client = client_of(&[&a, &b])?;
    // Until each server has taken early data once (the picker need not alternate strictly),
    // a bounded number of times.
    let mut answered = Vec::new();
    for _ in 0..16 {
        answered.push(whoami(&client).await?);
        tokio::time::sleep(Duration::from_millis(400)).await;
        let accepted = |backend| numbers(&client, backend).map(|(_, accepted, _)| accepted);
        if accepted(&a)? >= 1 && accepted(&b)? >= 1 {
            break;
        }
    }
    assert!(answered.iter().any(|name| name == "a") && answered.iter().any(|name| name == "b"));
    let (resumed, accepted, rejected) = total(&client, &[&a, &b])?;
    assert!(resumed >= 2, "the client resumed: {answered:?}");
    assert_eq!(
        (accepted, rejected),
        (resumed, 0),
        "every server took the other's ticket"
    );
    // Both servers took early data (rustls told the client so). Whether a server also reads
    // the early GET before the handshake completes, and so counts it as served early, is a
    // race on loopback; the first test and e2e_zero_rtt look at that.
    for backend in [&a, &b] {
        let (_, accepted, _) = numbers(&client, backend)?;
        assert!(
            accepted >= 1,
            "{} took no early data: {answered:?}",
            backend.name
        );
    }

    // A server of another cluster cannot open the ticket: a full handshake, the early GET
    // sent again after it, and answered.
    let client = client_of(&[&a, &c])?;
    let mut answered = Vec::new();
    for _ in 0..12 {
        answered.push(whoami(&client).await?);
        tokio::time::sleep(Duration::from_millis(400)).await;
        if total(&client, &[&a, &c])?.2 >= 1 {
            break;
        }
    }
    // Each server takes its own cluster's tickets: a refusal is the other cluster's ticket,
    // and its request was still answered (every whoami above succeeded).
    let (resumed, accepted, rejected) = total(&client, &[&a, &c])?;
    assert!(
        rejected >= 1,
        "no ticket of the other cluster refused: {answered:?}"
    );
    assert_eq!(resumed, accepted + rejected);
    Ok(())
}

/// A 0-RTT client of `backends` in turn, a new connection per request.
fn client_of(backends: &[&Backend]) -> TestResult<Client> {
    Ok(client(BackendList::new(backends.iter().map(|b| b.addr)))
        .idle_timeout(Duration::from_millis(200))
        .zero_rtt(true)
        .build()?)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_marked_replay_safe_goes_early_gets_425_and_is_sent_again_after_the_handshake()
-> TestResult {
    let backend = Backend::start_with("a", "0001", "127.0.0.1:0".parse()?, |builder| {
        builder.cluster_secret(b"the cluster's secret")
    })?;
    let client = client_of(&[&backend])?;
    let post = || -> TestResult<http::Request<String>> {
        let mut request = http::Request::post("/echo").body(String::new())?;
        request.extensions_mut().insert(ReplaySafe);
        Ok(request)
    };
    assert_eq!(client.send(post()?).await?.status(), http::StatusCode::OK);
    // Each POST goes on a new, resuming connection as early data. The server does not count
    // a POST safe: if it reads it before the handshake completes (a race on loopback) it
    // answers 425, and the client sends it again after the handshake; either way, 200.
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(client.send(post()?).await?.status(), http::StatusCode::OK);
        if server_metric(&backend, TOO_EARLY)? >= 1.0 {
            break;
        }
    }
    assert!(
        server_metric(&backend, TOO_EARLY)? >= 1.0,
        "no POST arrived early"
    );
    let (resumed, accepted, _) = numbers(&client, &backend)?;
    assert!(resumed >= 1 && accepted >= 1);
    Ok(())
}

const TOO_EARLY: &str = "qlb_server_early_requests_total{outcome=\"too_early\"}";
