//! The balancing policies over real qlb-server backends on loopback: affinity by key across
//! a fleet change (ring hash, Maglev), the bounded-load cap under a hot key, weighted round
//! robin moving traffic off a backend that reports high utilisation, outlier detection
//! ejecting a backend that fails half its requests, aperture clients covering a fleet evenly.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use qlb_client::{
    ApertureSettings, BackendList, Client, ClientSnapshot, Coordinate, HashKey, OutlierDetection,
    PickerKind, WrrSettings,
};
use qlb_testkit::{TestResult, eventually};
use support::load::Load;
use support::{SOON, backends, client};

/// The backend that answered `/whoami` (or `path`) for a request keyed `key`.
async fn keyed(client: &Client, path: &str, key: &str) -> TestResult<SocketAddr> {
    let mut request = http::Request::get(path).body(String::new())?;
    request.extensions_mut().insert(HashKey::new(key));
    let response = client.send(request).await?;
    let served = *response
        .extensions()
        .get::<qlb_client::ServedBy>()
        .ok_or("no ServedBy")?;
    let status = response.status();
    let _: Bytes = response.into_body().collect().await?.to_bytes();
    if status != http::StatusCode::OK {
        return Err(format!("{path} answered {status}").into());
    }
    Ok(served.backend)
}

/// Where each of `keys` lands, four requests at a time.
async fn placements(client: &Client, keys: &[String]) -> TestResult<HashMap<String, SocketAddr>> {
    let mut placed = HashMap::new();
    for chunk in keys.chunks(4) {
        let answers = concurrently(client, chunk).await?;
        placed.extend(chunk.iter().cloned().zip(answers));
    }
    Ok(placed)
}

/// The backends of `keys`, sent all at once.
async fn concurrently(client: &Client, keys: &[String]) -> TestResult<Vec<SocketAddr>> {
    let tasks: Vec<_> = keys
        .iter()
        .map(|key| {
            let (client, key) = (client.clone(), key.clone());
            tokio::spawn(async move {
                keyed(&client, "/whoami", &key)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await??);
    }
    Ok(answers)
}

/// 1,000 keys over 5 backends: the same placement twice, then one backend leaves and only
/// its keys move (`strict`), or, for Maglev, its keys and at most 5% of the others.
async fn affinity_across_a_fleet_change(picker: PickerKind, strict: bool) -> TestResult {
    let backends = backends(&format!("{picker}-"), 5)?;
    let list = BackendList::new(backends.iter().map(|b| b.addr));
    // A large epsilon: four requests in flight must not spill keys (bounded loads are
    // tested on their own below).
    let client = client(list.clone())
        .picker(picker)
        .bounded_load(4.0)
        .build()?;
    let keys: Vec<String> = (0..1000).map(|i| format!("user-{i}")).collect();
    let first = placements(&client, &keys).await?;
    let second = placements(&client, &keys).await?;
    assert_eq!(first, second, "placements changed on a stable fleet");
    let used: std::collections::HashSet<_> = first.values().collect();
    assert_eq!(used.len(), 5, "keys reached only {used:?}");

    let removed = backends[2].addr;
    list.set(
        backends
            .iter()
            .map(|b| b.addr)
            .filter(|addr| *addr != removed),
    );
    eventually(SOON, "the client to drop the backend", || {
        client.snapshot().backend(removed).is_none()
    })
    .await?;
    let third = placements(&client, &keys).await?;
    let mut others_moved = 0;
    for key in &keys {
        if first[key] == removed {
            assert_ne!(third[key], removed, "{key} still on the removed backend");
        } else if third[key] != first[key] {
            others_moved += 1;
        }
    }
    if strict {
        assert_eq!(others_moved, 0, "keys of staying backends moved");
    } else {
        assert!(
            others_moved <= 40,
            "{others_moved} keys of staying backends moved"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ring_hash_keeps_1000_keys_and_moves_only_the_removed_backends() -> TestResult {
    affinity_across_a_fleet_change(PickerKind::RingHash, true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maglev_keeps_1000_keys_and_moves_few_besides_the_removed_backends() -> TestResult {
    affinity_across_a_fleet_change(PickerKind::Maglev, false).await
}

/// 20 requests with one key held in flight on 4 backends, epsilon 0.25: the cap is
/// ceil(1.25 * 20 / 4) = 7, so the key's backend takes 7 and the rest spill over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_key_never_pushes_a_backend_over_the_bounded_load_cap() -> TestResult {
    let backends = backends("hot-", 4)?;
    let client = client(BackendList::new(backends.iter().map(|b| b.addr)))
        .picker(PickerKind::RingHash)
        .bounded_load(0.25)
        .min_connections(1)
        .build()?;
    eventually(SOON, "a connection to every backend", || {
        client
            .snapshot()
            .backends
            .iter()
            .all(|b| b.connections_open >= 1)
    })
    .await?;
    let home = keyed(&client, "/whoami", "hot").await?;
    let mut requests = Vec::new();
    for _ in 0..20 {
        let client = client.clone();
        requests.push(tokio::spawn(async move {
            keyed(&client, "/delay/3000", "hot")
                .await
                .map_err(|e| e.to_string())
        }));
    }
    // All 20 picked at once: each pick sees the ones before it (picks are serialised).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let snapshot = client.snapshot();
    let in_flight: Vec<u64> = snapshot.backends.iter().map(|b| b.in_flight).collect();
    assert_eq!(in_flight.iter().sum::<u64>(), 20, "{in_flight:?}");
    assert!(
        in_flight.iter().all(|&n| n <= 7),
        "over the cap: {in_flight:?}"
    );
    assert_eq!(
        snapshot.backend(home).map(|b| b.in_flight),
        Some(7),
        "{in_flight:?}"
    );
    for request in requests {
        request.await??;
    }
    Ok(())
}

/// Requests each backend took between two snapshots.
fn taken(before: &ClientSnapshot, after: &ClientSnapshot) -> HashMap<SocketAddr, u64> {
    after
        .backends
        .iter()
        .map(|b| {
            let earlier = before.backend(b.addr).map_or(0, |e| e.requests);
            (b.addr, b.requests - earlier)
        })
        .collect()
}

/// Three backends report 10% utilisation; one turns to 90%. Within two weight update
/// periods it gets a small share (its weight 111 against 1000: about 5%).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrr_moves_traffic_off_a_backend_reporting_high_utilisation() -> TestResult {
    let backends = backends("wrr-", 3)?;
    for backend in &backends {
        backend.report_utilization(Some(0.1));
    }
    let period = Duration::from_millis(250);
    let client = client(BackendList::new(backends.iter().map(|b| b.addr)))
        .picker(PickerKind::Wrr)
        .wrr(WrrSettings {
            blackout_period: Duration::from_millis(200),
            weight_update_period: period,
            ..WrrSettings::default()
        })
        .build()?;
    let load = Load::start(&client, 4, 200_000);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let even = client.snapshot();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = taken(&even, &client.snapshot());
    let busy = backends[0].addr;
    let total: u64 = before.values().sum();
    assert!(before[&busy] * 5 > total, "not even before: {before:?}");

    backends[0].report_utilization(Some(0.9));
    tokio::time::sleep(2 * period).await;
    let shifted = client.snapshot();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = taken(&shifted, &client.snapshot());
    let outcomes = load.stop().await;
    assert!(support::load::errors(&outcomes).is_empty());
    let total: u64 = after.values().sum();
    assert!(total >= 60, "too few requests to judge: {after:?}");
    assert!(
        after[&busy] * 100 < total * 15,
        "the busy backend kept its share: {after:?}"
    );
    Ok(())
}

/// One of four backends fails every other request: ejected by its failure rate, it gets
/// under 5% of the requests while ejected; recovered, it is back once the ejection ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outlier_failing_half_its_requests_is_ejected_until_it_recovers() -> TestResult {
    let backends = backends("outlier-", 4)?;
    let outlier = backends[0].addr;
    backends[0].fail_half(true);
    let client = client(BackendList::new(backends.iter().map(|b| b.addr)))
        .outlier_detection(OutlierDetection {
            failure_rate: 0.3,
            min_requests: 10,
            interval: Duration::from_millis(300),
            base_ejection_time: Duration::from_secs(3),
            max_ejection_percent: 25,
            ..OutlierDetection::default()
        })
        .build()?;
    let load = Load::start(&client, 4, 200_000);
    eventually(SOON, "the outlier's ejection", || {
        client
            .snapshot()
            .backend(outlier)
            .is_some_and(|b| b.ejected)
    })
    .await?;
    let ejected = client.snapshot();
    let ejected_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = client.snapshot();
    let share = taken(&ejected, &during);
    let total: u64 = share.values().sum();
    assert!(total >= 60, "too few requests to judge: {share:?}");
    assert!(
        share[&outlier] * 100 < total * 5,
        "the ejected backend kept traffic: {share:?}"
    );
    assert_eq!(during.ejected(), 1);
    assert!(during.backend(outlier).is_some_and(|b| b.ejections >= 1));
    let mut registry = prometheus_client::registry::Registry::default();
    client.register_metrics(&mut registry);
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &registry)?;
    let ejected = format!("qlb_client_backend_ejected{{backend=\"{outlier}\"}} 1");
    assert!(metrics.contains(&ejected), "{metrics}");
    assert!(metrics.contains(&format!(
        "qlb_client_ejections_total{{backend=\"{outlier}\"}}"
    )));

    backends[0].fail_half(false);
    eventually(SOON, "the end of the ejection", || {
        client
            .snapshot()
            .backend(outlier)
            .is_some_and(|b| !b.ejected)
    })
    .await?;
    assert!(ejected_at.elapsed() >= Duration::from_millis(1400));
    let back = client.snapshot();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let share = taken(&back, &client.snapshot());
    let total: u64 = share.values().sum();
    assert!(
        share[&outlier] * 10 > total,
        "not back after recovering: {share:?}"
    );
    drop(load.stop().await);
    Ok(())
}

/// 20 aperture clients of 10 backends, each placed by its index with a window of one
/// backend's width: each sends 50 requests to at most two backends, and every backend
/// takes its tenth of the 1,000 within 25%.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_aperture_clients_cover_ten_backends_evenly() -> TestResult {
    let backends = backends("aperture-", 10)?;
    let list = BackendList::new(backends.iter().map(|b| b.addr));
    let clients: Vec<Client> = (0..20)
        .map(|index| {
            client(list.clone())
                .picker(PickerKind::Aperture)
                .aperture(ApertureSettings {
                    min_aperture: 1,
                    max_aperture: 10,
                    coordinate: Some(Coordinate { index, count: 20 }),
                    ..ApertureSettings::default()
                })
                .build()
        })
        .collect::<Result<_, _>>()?;
    let runs: Vec<_> = clients
        .iter()
        .map(|client| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    support::whoami(&client).await.map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for run in runs {
        run.await??;
    }
    let mut per_backend: HashMap<SocketAddr, u64> = HashMap::new();
    for client in &clients {
        let snapshot = client.snapshot();
        assert!(
            snapshot.aperture.is_some_and(|size| size <= 2),
            "{snapshot:?}"
        );
        let reached: Vec<_> = snapshot
            .backends
            .iter()
            .filter(|b| b.requests > 0)
            .collect();
        assert!(
            reached.len() <= 2,
            "a client beyond its window: {reached:?}"
        );
        for backend in &snapshot.backends {
            *per_backend.entry(backend.addr).or_default() += backend.requests;
        }
    }
    assert_eq!(per_backend.values().sum::<u64>(), 1000);
    for backend in &backends {
        let count = per_backend.get(&backend.addr).copied().unwrap_or(0);
        assert!(
            (75..=125).contains(&count),
            "{}: {count}: {per_backend:?}",
            backend.name
        );
    }
    Ok(())
}

/// One aperture client of 10 backends (placed as the first of 10 clients, so that its share
/// of the ring is one backend): 40 requests in flight open its window (2 in flight per
/// backend at most), one at a time close it again to its minimum, and the backends that left
/// the window keep no connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aperture_grows_under_load_and_shrinks_back_closing_connections() -> TestResult {
    let backends = backends("sized-", 10)?;
    let client = client(BackendList::new(backends.iter().map(|b| b.addr)))
        .picker(PickerKind::Aperture)
        .aperture(ApertureSettings {
            min_aperture: 1,
            max_aperture: 10,
            coordinate: Some(Coordinate {
                index: 0,
                count: 10,
            }),
            ..ApertureSettings::default()
        })
        .build()?;
    let busy: Vec<_> = (0..40)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..15 {
                    support::fetch(&client, "/delay/50")
                        .await
                        .map_err(|e| e.to_string())?;
                }
                Ok::<_, String>(())
            })
        })
        .collect();
    for task in busy {
        task.await??;
    }
    let grown = client.snapshot();
    assert!(
        grown.aperture.is_some_and(|size| size >= 5),
        "{:?}",
        grown.aperture
    );
    let reached = grown.backends.iter().filter(|b| b.requests > 0).count();
    assert!(reached >= 5, "{grown:?}");

    for _ in 0..200 {
        support::whoami(&client).await?;
    }
    assert_eq!(client.snapshot().aperture, Some(1));
    eventually(SOON, "connections only within the window", || {
        let open = client.snapshot();
        open.backends
            .iter()
            .filter(|b| b.connections_open > 0)
            .count()
            <= 1
    })
    .await?;
    Ok(())
}
