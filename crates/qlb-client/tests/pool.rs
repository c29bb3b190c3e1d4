//! The connection pool against real qlb-server backends: the minimum opens ahead of requests,
//! an expired connection is replaced before it stops taking requests and then drains, idle
//! connections close, GOAWAY retires a connection and a new one takes over.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use qlb_client::{CloseReason, Connection};
use qlb_testkit::{TestResult, eventually, within};
use support::load::{Load, errors};
use support::{Backend, SOON, backends, client, fetch};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimum_opens_before_any_request() -> TestResult {
    let backends = backends("min", 2)?;
    let list = qlb_client::BackendList::new(backends.iter().map(|b| b.addr));
    let client = client(list).min_connections(2).build()?;
    eventually(SOON, "two connections per backend", || {
        let snapshot = client.snapshot();
        snapshot.backends.len() == 2
            && snapshot
                .backends
                .iter()
                .all(|b| b.connections_open == 2 && b.connections_opened == 2)
    })
    .await?;
    assert_eq!(client.snapshot().requests(), 0);
    assert_eq!(client.connections().len(), 4);
    // They stay: nothing to replace, nothing idle beyond the minimum.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        client
            .snapshot()
            .backends
            .iter()
            .all(|b| b.connections_opened == 2)
    );
    Ok(())
}

/// What the test saw of the pool at one moment.
struct Sample {
    ready: Vec<u64>,
    first_closed: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_connection_is_replaced_before_it_stops_taking_requests() -> TestResult {
    let backend = Backend::start("aging", "0011")?;
    let lifetime = Duration::from_millis(600);
    let client = client(backend.addr)
        .min_connections(1)
        .max_lifetime(lifetime)
        .build()?;
    eventually(SOON, "a first connection", || {
        !client.connections().is_empty()
    })
    .await?;
    let first: Connection = client.connections()[0].clone();
    let opened = Instant::now();

    // A request that outlives the connection's lifetime holds it open while it drains.
    let held = tokio::spawn({
        let client = client.clone();
        async move { fetch(&client, "/delay/2000").await }
    });
    let mut samples = Vec::new();
    within(SOON, "the first connection closes", async {
        while !first.is_closed() {
            samples.push(Sample {
                ready: client.connections().iter().map(Connection::id).collect(),
                first_closed: first.is_closed(),
            });
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await?;
    let lived = opened.elapsed();
    let (status, _) = held.await??;
    assert_eq!(
        status,
        http::StatusCode::OK,
        "the held request finished on the old connection"
    );

    // Never a moment without a connection taking requests.
    assert!(
        samples.iter().all(|s| !s.ready.is_empty()),
        "a gap with no connection"
    );
    // The old one stopped taking requests only once its replacement took them, and stayed
    // open (draining its request) after that.
    let handover = samples
        .iter()
        .position(|s| !s.ready.contains(&first.id()))
        .ok_or("the first connection was never retired")?;
    assert!(samples[handover].ready.iter().any(|&id| id != first.id()));
    assert!(!samples[handover].first_closed);
    assert!(first.is_draining());
    assert!(
        lived >= Duration::from_millis(2000) - Duration::from_millis(100),
        "{lived:?}"
    );

    let numbers = client.snapshot().backends[0].clone();
    assert!(
        numbers.connections_closed.get(CloseReason::MaxLifetime) >= 1,
        "{numbers:?}"
    );
    assert!(numbers.replacements >= 1, "{numbers:?}");
    assert_eq!(numbers.errors, 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_idle_timeout() -> TestResult {
    let backend = Backend::start("idle", "0012")?;
    let client = client(backend.addr)
        .idle_timeout(Duration::from_millis(300))
        .build()?;
    support::whoami(&client).await?;
    assert_eq!(client.connections().len(), 1);
    eventually(SOON, "the idle connection closes", || {
        let numbers = &client.snapshot().backends[0];
        numbers.connections_open == 0 && numbers.connections_closed.get(CloseReason::Idle) == 1
    })
    .await?;
    // The next request opens a new one.
    support::whoami(&client).await?;
    assert_eq!(client.snapshot().backends[0].connections_opened, 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_retires_connections_without_failing_requests() -> TestResult {
    // The server drains every connection after ~300 ms with GOAWAY (max connection age).
    let backend = Backend::start_with("recycling", "0013", "127.0.0.1:0".parse()?, |builder| {
        builder.max_connection_age(Duration::from_millis(300))
    })?;
    let client = client(backend.addr).build()?;
    let load = Load::start(&client, 4, 20_000);
    let goaways = || {
        let numbers = &client.snapshot().backends;
        numbers
            .first()
            .map_or(0, |n| n.connections_closed.get(CloseReason::GoAway))
    };
    let recycled = eventually(SOON, "three connections retired by GOAWAY", || {
        goaways() >= 3
    })
    .await;
    let outcomes = load.stop().await;
    recycled?;
    assert!(errors(&outcomes).is_empty(), "{:?}", errors(&outcomes));
    let numbers = &client.snapshot().backends[0];
    assert!(numbers.connections_opened >= 4, "{numbers:?}");
    assert!(numbers.replacements >= 3, "{numbers:?}");
    let ids: HashSet<u64> = client.connections().iter().map(Connection::id).collect();
    assert!(ids.len() <= 1, "{ids:?}");
    Ok(())
}
