//! Balancing over real qlb-server backends under steady load: a scale-up converges to fair
//! shares, a backend drained with GOAWAY fails no request, unhealthy backends get nothing
//! (and none healthy is a clear error), subsetting keeps K backends, the load-aware pickers
//! avoid a busy backend.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use qlb_client::{BackendList, Error, PickerKind};
use qlb_testkit::{TestResult, eventually, within};
use support::load::{Load, errors, shares};
use support::{SOON, backends, client, ready_check, whoami};

/// 3 backends under steady load, 3 more added; with max_lifetime 2 s, within 5 s every
/// backend carries its fair share +-25%.
async fn scale_up_converges(picker: PickerKind) -> TestResult {
    let backends = backends(&format!("{picker}-"), 6)?;
    let list = BackendList::new(backends[..3].iter().map(|b| b.addr));
    let client = client(list.clone())
        .picker(picker)
        .max_lifetime(Duration::from_secs(2))
        .build()?;
    let load = Load::start(&client, 6, 200_000);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let added = Instant::now();
    list.set(backends.iter().map(|b| b.addr));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let outcomes = load.stop().await;
    assert!(errors(&outcomes).is_empty(), "{:?}", errors(&outcomes));

    // From 1 s after the scale-up to 5 s: every backend within 25% of a sixth. (A window
    // of seconds, not one, so that random pickers are judged on enough requests.)
    let window = shares(
        &outcomes,
        added + Duration::from_secs(1),
        added + Duration::from_secs(5),
    );
    let total: usize = window.values().sum();
    assert!(total >= 60, "too few requests to judge: {window:?}");
    let fair = total as f64 / 6.0;
    for backend in &backends {
        let share = window.get(&backend.name).copied().unwrap_or(0) as f64;
        assert!(
            (share - fair).abs() <= 0.25 * fair,
            "{}: {share} requests, fair {fair:.1}: {window:?}",
            backend.name
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_converges_to_fair_shares_with_round_robin() -> TestResult {
    scale_up_converges(PickerKind::RoundRobin).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_up_converges_to_fair_shares_with_power_of_two_choices() -> TestResult {
    scale_up_converges(PickerKind::PowerOfTwoChoices).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_drained_with_goaway_under_load_fails_no_request() -> TestResult {
    let backends = backends("drain-", 3)?;
    let client = client(BackendList::new(backends.iter().map(|b| b.addr))).build()?;
    let load = Load::start(&client, 6, 200_000);
    tokio::time::sleep(Duration::from_secs(1)).await;

    let drained = &backends[0];
    within(
        SOON,
        "the drain",
        drained.server.shutdown(Duration::from_secs(5)),
    )
    .await?;
    let drained_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let outcomes = load.stop().await;

    assert!(errors(&outcomes).is_empty(), "{:?}", errors(&outcomes));
    let before = shares(
        &outcomes,
        drained_at - Duration::from_secs(2),
        drained_at - Duration::from_millis(500),
    );
    assert!(
        before.contains_key(&drained.name),
        "it served before: {before:?}"
    );
    let after = shares(&outcomes, drained_at, Instant::now());
    assert!(
        !after.contains_key(&drained.name),
        "it served after its drain: {after:?}"
    );
    assert!(
        after.len() == 2 && after.values().all(|&n| n > 10),
        "{after:?}"
    );
    let numbers = client.snapshot();
    let drained_numbers = numbers.backend(drained.addr).ok_or("drained backend")?;
    assert!(
        drained_numbers
            .connections_closed
            .get(qlb_client::CloseReason::GoAway)
            >= 1,
        "{drained_numbers:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_backends_get_no_requests_and_none_healthy_is_an_error() -> TestResult {
    let backends = backends("health-", 2)?;
    let check = ready_check();
    let client = client(BackendList::new(backends.iter().map(|b| b.addr)))
        .health_check(check)
        .build()?;
    // None until the backends are known.
    let healthy = |index: usize| {
        let snapshot = client.snapshot();
        snapshot.backend(backends[index].addr).map(|b| b.healthy)
    };

    backends[1].set_ready(false);
    eventually(SOON, "health-2 unhealthy", || healthy(1) == Some(false)).await?;
    for _ in 0..10 {
        assert_eq!(whoami(&client).await?, "health-1");
    }

    backends[0].set_ready(false);
    eventually(SOON, "both unhealthy", || healthy(0) == Some(false)).await?;
    let err = whoami(&client).await.expect_err("none healthy");
    assert!(
        matches!(
            err.downcast_ref::<Error>(),
            Some(Error::NoHealthyBackends(2))
        ),
        "{err}"
    );

    backends[1].set_ready(true);
    eventually(SOON, "health-2 healthy again", || healthy(1) == Some(true)).await?;
    assert_eq!(whoami(&client).await?, "health-2");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subsetting_keeps_at_most_k_backends_stable_per_client_id() -> TestResult {
    let backends = backends("subset-", 5)?;
    let list = BackendList::new(backends.iter().map(|b| b.addr));
    let client = client(list.clone()).subset(2).client_id(7).build()?;
    eventually(SOON, "resolved", || !client.snapshot().backends.is_empty()).await?;
    let mut served = HashSet::new();
    for _ in 0..20 {
        served.insert(whoami(&client).await?);
    }
    assert_eq!(served.len(), 2, "{served:?}");
    let chosen: HashSet<_> = client.snapshot().backends.iter().map(|b| b.addr).collect();
    assert_eq!(chosen.len(), 2);
    // The same ID, the same subset.
    let again = {
        let other = support::client(list.clone())
            .subset(2)
            .client_id(7)
            .build()?;
        eventually(SOON, "resolved", || !other.snapshot().backends.is_empty()).await?;
        other
            .snapshot()
            .backends
            .iter()
            .map(|b| b.addr)
            .collect::<HashSet<_>>()
    };
    assert_eq!(again, chosen);
    Ok(())
}

/// With one backend busy on a slow request, the load-aware pickers send the next requests
/// to the other one (round robin would alternate).
async fn avoids_the_busy_backend(picker: PickerKind) -> TestResult {
    let backends = backends(&format!("busy-{picker}-"), 2)?;
    let client = client(BackendList::new(backends.iter().map(|b| b.addr)))
        .picker(picker)
        .build()?;
    let slow = tokio::spawn({
        let client = client.clone();
        async move { support::fetch(&client, "/delay/3000").await }
    });
    eventually(SOON, "the slow request in flight", || {
        client.snapshot().backends.iter().any(|b| b.in_flight == 1)
    })
    .await?;
    let busy = client
        .snapshot()
        .backends
        .iter()
        .find(|b| b.in_flight == 1)
        .map(|b| b.addr)
        .ok_or("busy backend")?;
    let idle = backends
        .iter()
        .find(|b| b.addr != busy)
        .ok_or("idle backend")?;
    for _ in 0..8 {
        assert_eq!(whoami(&client).await?, idle.name);
    }
    slow.await??;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_loaded_avoids_the_busy_backend() -> TestResult {
    avoids_the_busy_backend(PickerKind::LeastLoaded).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_of_two_choices_avoids_the_busy_backend() -> TestResult {
    avoids_the_busy_backend(PickerKind::PowerOfTwoChoices).await
}
