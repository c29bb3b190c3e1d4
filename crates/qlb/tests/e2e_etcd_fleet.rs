//! A fleet that runs itself on a real etcd (started by the test): `qlb serve --etcd`
//! backends take their server IDs from etcd and register; `qlb lb` instances with an
//! `[etcd]` table follow them. Each scenario runs under `qlb load` traffic:
//!
//! * scale up from 2 to 5 backends and back down to 2: no request fails, every backend
//!   that joined served requests;
//! * a SIGKILLed backend leaves the pool within its lease TTL;
//! * etcd killed for 10 s mid-run: forwarding goes on with the last fleet (the load
//!   balancers say they lost etcd), and they catch up when it returns;
//! * two load balancers follow one fleet to the same revision and send every new
//!   connection to the same backend;
//! * a full key rotation (`qlb cluster rotate`, interrupted once and resumed) with no
//!   connection lost.

mod support;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use qlb_etcd::Snapshot;
use qlb_testkit::{Polled, etcd_available, poll_blocking};
use serde_json::Value;
use support::TestResult;
use support::fleet::{Fleet, FleetLb, MEMBER_TTL};
use support::load::LoadRun;
use support::process::{Process, run};

/// The longest a fleet change may take to reach a load balancer and pass health checks.
const STEP: Duration = Duration::from_secs(20);

/// `qlb load`'s arguments: connections recycled often, so new backends get some.
const LOAD_ARGS: [&str; 6] = [
    "--connections",
    "8",
    "--concurrency",
    "8",
    "--max-lifetime",
    "1s",
];

fn whoami(lb: &FleetLb) -> String {
    format!("https://{}/whoami", lb.addr)
}

#[test]
fn scaling_from_2_to_5_backends_and_back_fails_no_request() -> TestResult {
    if !etcd_available() {
        return Ok(());
    }
    let mut fleet = Fleet::start(1)?;
    fleet.add_backend("b1")?;
    fleet.add_backend("b2")?;
    fleet.lbs[0].wait_for_members(&["b1", "b2"], STEP)?;
    let load = LoadRun::start(&whoami(&fleet.lbs[0]), Duration::from_secs(16), &LOAD_ARGS);
    let started = Instant::now();
    let mut members = vec!["b1", "b2"];
    // qlb load counts answers by server ID, which etcd allocated.
    let mut server_ids = BTreeMap::new();
    for name in ["b3", "b4", "b5"] {
        std::thread::sleep(Duration::from_millis(1500));
        fleet.add_backend(name)?;
        members.push(name);
        let status = fleet.lbs[0].wait_for_members(&members, STEP)?;
        for backend in status["backends"].as_array().into_iter().flatten() {
            assert_eq!(backend["source"], "etcd", "{backend}");
            let (name, id) = (backend["name"].as_str(), backend["server_id"].as_str());
            server_ids.insert(
                name.unwrap_or_default().to_owned(),
                id.unwrap_or_default().to_owned(),
            );
        }
    }
    for name in ["b5", "b4", "b3"] {
        std::thread::sleep(Duration::from_millis(1500));
        let backend = fleet.backends.get_mut(name).ok_or("no backend")?;
        backend.terminate()?;
        backend.wait_for_log("stopped", STEP)?;
        members.retain(|m| *m != name);
        fleet.lbs[0].wait_for_members(&members, STEP)?;
    }
    let scaled_in = started.elapsed();
    assert!(
        !load.is_finished(),
        "the load ended before the scaling did ({scaled_in:?})"
    );
    let summary = load.finish_without_errors()?;
    for (name, server_id) in &server_ids {
        let served = summary["per_backend"][server_id]
            .as_u64()
            .unwrap_or_default();
        assert!(
            served > 0,
            "{name} ({server_id}) served no request: {summary}"
        );
    }
    assert_eq!(server_ids.len(), 5);
    let status = fleet.lbs[0].status()?;
    eprintln!(
        "scaled 2 -> 5 -> 2 in {scaled_in:?}: {} requests, 0 errors, per backend {}; fleet {}",
        summary["requests"], summary["per_backend"], status["fleet"]
    );
    assert_eq!(status["fleet"]["connected"], true);
    assert_eq!(status["fleet"]["members"], 2);
    Ok(())
}

#[test]
fn a_killed_backend_leaves_the_pool_within_its_lease_ttl() -> TestResult {
    if !etcd_available() {
        return Ok(());
    }
    let mut fleet = Fleet::start(1)?;
    for name in ["b1", "b2", "b3"] {
        fleet.add_backend(name)?;
    }
    let lb = &fleet.lbs[0];
    lb.wait_for_members(&["b1", "b2", "b3"], STEP)?;
    let load = LoadRun::start(&whoami(lb), Duration::from_secs(8), &LOAD_ARGS);
    std::thread::sleep(Duration::from_secs(1));
    fleet.backends.get_mut("b2").ok_or("no b2")?.kill();
    let killed = Instant::now();
    let lb = &fleet.lbs[0];
    lb.wait_for("without b2", MEMBER_TTL + STEP, |status| {
        status["backends"]
            .as_array()
            .is_some_and(|b| b.len() == 2 && !b.iter().any(|b| b["name"] == "b2"))
    })?;
    let gone_in = killed.elapsed();
    eprintln!(
        "a SIGKILLed backend left the pool {gone_in:?} after its death (lease TTL {MEMBER_TTL:?})"
    );
    // etcd expires leases on its own clock, checked twice a second: allow for it.
    assert!(
        gone_in < MEMBER_TTL + Duration::from_secs(2),
        "b2 left {gone_in:?} after its death, lease TTL {MEMBER_TTL:?}"
    );
    // The load's connections on b2 died with it; the load goes on over the others.
    drop(load);
    Ok(())
}

#[test]
fn forwarding_survives_10s_without_etcd_and_the_lbs_catch_up() -> TestResult {
    if !etcd_available() {
        return Ok(());
    }
    let mut fleet = Fleet::start(2)?;
    fleet.add_backend("b1")?;
    fleet.add_backend("b2")?;
    for lb in &fleet.lbs {
        lb.wait_for_members(&["b1", "b2"], STEP)?;
    }
    let loads: Vec<LoadRun> = fleet
        .lbs
        .iter()
        .map(|lb| LoadRun::start(&whoami(lb), Duration::from_secs(16), &LOAD_ARGS))
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    fleet.etcd.kill()?;
    let down = Instant::now();
    for lb in &fleet.lbs {
        let status = lb.wait_for("without etcd", STEP, |s| s["fleet"]["connected"] == false)?;
        assert!(
            status["fleet"]["last_error"].is_string(),
            "{}",
            status["fleet"]
        );
        let metrics = support::http::ok(lb.admin, "GET", "/metrics")?;
        assert!(
            metrics.contains("qlb_lb_fleet_etcd_connected{cluster=\"edge\"} 0"),
            "{metrics}"
        );
        assert_eq!(lb.backends()?.len(), 2, "the last fleet stays");
    }
    std::thread::sleep(Duration::from_secs(10).saturating_sub(down.elapsed()));
    fleet.etcd.restart()?;
    eprintln!("etcd was down {:?}", down.elapsed());
    // A backend that joins after etcd's return reaches both load balancers.
    fleet.add_backend("b3")?;
    for lb in &fleet.lbs {
        let status = lb.wait_for_members(&["b1", "b2", "b3"], STEP)?;
        assert_eq!(status["fleet"]["connected"], true, "{}", status["fleet"]);
        assert!(
            status["fleet"]["disconnects"].as_u64() >= Some(1),
            "{}",
            status["fleet"]
        );
    }
    let revisions = converged(&fleet)?;
    assert_eq!(
        revisions[0], revisions[1],
        "both at one revision: {revisions:?}"
    );
    for load in loads {
        load.finish_without_errors()?;
    }
    Ok(())
}

#[test]
fn two_lbs_reach_one_revision_and_send_every_new_connection_alike() -> TestResult {
    if !etcd_available() {
        return Ok(());
    }
    let mut fleet = Fleet::start(2)?;
    let names = ["b1", "b2", "b3", "b4", "b5"];
    for name in names {
        fleet.add_backend(name)?;
    }
    // Under load while the fleet forms; the probes below count datagrams, so they come after.
    let load = LoadRun::start(&whoami(&fleet.lbs[0]), Duration::from_secs(3), &LOAD_ARGS);
    for lb in &fleet.lbs {
        lb.wait_for_members(&names, STEP)?;
    }
    // Both at the revision of the fleet's last change, however they came by it.
    let revisions = converged(&fleet)?;
    assert_eq!(revisions[0], revisions[1], "{revisions:?}");
    load.finish_without_errors()?;
    // Initials of unknown connection IDs go where the fallback hash says: the same backend
    // from either load balancer, for every one.
    let choices: Vec<Vec<String>> = fleet
        .lbs
        .iter()
        .map(|lb| fallback_choices(lb, 48))
        .collect::<TestResult<_>>()?;
    assert_eq!(choices[0], choices[1]);
    let spread: BTreeMap<&String, usize> = choices[0].iter().fold(BTreeMap::new(), |mut m, b| {
        *m.entry(b).or_default() += 1;
        m
    });
    eprintln!(
        "two load balancers at revision {}: the same choice for all 48 Initials, spread {spread:?}",
        revisions[0]
    );
    assert!(
        spread.len() >= 4,
        "48 Initials over 5 backends reached {spread:?}"
    );
    Ok(())
}

/// A full key rotation under load. `qlb cluster init` puts the backends' cluster file on
/// etcd; two load balancers and three backends (max connection age 1 s, grace 1 s) follow
/// it. `qlb cluster rotate --retire-after 3s` publishes a new codepoint and is SIGKILLed
/// right after; run again, it resumes, waits until both load balancers decode the new
/// codepoint, moves the servers, and retires the old one. No request fails and no
/// connection is lost, through either load balancer.
#[test]
fn a_key_rotation_under_load_loses_no_connection_and_resumes_after_a_kill() -> TestResult {
    if !etcd_available() {
        return Ok(());
    }
    let mut fleet = Fleet::start(2)?;
    let init = fleet.init_cluster()?;
    assert!(init.contains("servers issue under 1"), "{init}");
    let ages = [
        "--max-connection-age",
        "1s",
        "--max-connection-age-grace",
        "1s",
    ];
    for name in ["b1", "b2", "b3"] {
        fleet.add_backend_with(name, &ages)?;
    }
    for lb in &fleet.lbs {
        lb.wait_for_members(&["b1", "b2", "b3"], STEP)?;
    }
    let before = fleet.snapshot()?;
    assert!(
        before.members.iter().all(|m| m.codepoint == Some(1)),
        "{before:?}"
    );
    let loads: Vec<LoadRun> = fleet
        .lbs
        .iter()
        .map(|lb| LoadRun::start(&whoami(lb), Duration::from_secs(16), &LOAD_ARGS))
        .collect();
    std::thread::sleep(Duration::from_secs(2));

    let mut interrupted = Process::spawn(
        "qlb cluster rotate",
        fleet
            .cluster_command("rotate")
            .args(["--retire-after", "3s"]),
    )?;
    let published = |snapshot: &Snapshot| snapshot.rotation.is_some();
    if let Polled::TimedOut(snapshot) = poll_blocking(STEP, || fleet.snapshot(), published)? {
        return Err(format!("no rotation published: {snapshot:?}").into());
    }
    interrupted.kill();
    let rotated = run(
        "qlb cluster rotate",
        fleet
            .cluster_command("rotate")
            .args(["--retire-after", "3s"]),
        Duration::from_secs(60),
    )?;
    let said = String::from_utf8_lossy(&rotated.stdout).into_owned();
    assert!(
        rotated.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    for step in [
        "resuming the rotation from codepoint 1 to 2",
        "every load balancer decodes codepoint 2; servers issue under it",
        "every server issues under codepoint 2; codepoint 1 retires in 3s",
        "codepoint 1 retired",
    ] {
        assert!(said.contains(step), "missing {step:?} in:\n{said}");
    }
    let after = fleet.snapshot()?;
    let cluster = after.cluster.as_ref().ok_or("no cluster record")?;
    let record = cluster.record.as_ref().map_err(|e| e.to_string())?;
    assert_eq!((record.codepoints(), record.issuing), (vec![2], 2));
    assert!(after.rotation.is_none(), "{after:?}");
    assert!(
        after.members.iter().all(|m| m.codepoint == Some(2)),
        "{after:?}"
    );
    let applied = |snapshot: &Snapshot| {
        snapshot.lbs.len() == 2 && snapshot.lbs.iter().all(|lb| lb.codepoints == [2])
    };
    if let Polled::TimedOut(snapshot) = poll_blocking(STEP, || fleet.snapshot(), applied)? {
        return Err(format!(
            "the load balancers did not drop codepoint 1: {:?}",
            snapshot.lbs
        )
        .into());
    }
    for load in loads {
        let summary = load.finish_without_errors()?;
        assert_eq!(summary["connections"]["lost"], 0, "{summary}");
        assert!(
            summary["connections"]["goaway"].as_u64() > Some(0),
            "{summary}"
        );
    }
    let status = run(
        "qlb cluster status",
        &mut fleet.cluster_command("status"),
        STEP,
    )?;
    let shown = String::from_utf8_lossy(&status.stdout);
    eprintln!("rotation 1 -> 2 under load:\n{said}\n{shown}");
    assert!(
        shown.contains("2: 2-octet server IDs, 6-octet nonces"),
        "{shown}"
    );
    for member in ["b1", "b2", "b3"] {
        assert!(shown.contains(member), "{shown}");
    }
    Ok(())
}

/// The fleet on an etcd with TLS (a self-signed certificate, trusted as the CA) and
/// authentication on: `qlb cluster init`, `qlb serve` and `qlb lb` all reach it with the CA
/// and a user, the load balancer routes to the backends it learnt there, and without the
/// user etcd refuses `qlb cluster status`.
#[test]
fn a_fleet_on_an_etcd_with_tls_and_a_user_runs_as_on_a_plain_one() -> TestResult {
    if !etcd_available() {
        return Ok(());
    }
    let mut fleet = Fleet::start_secure(1)?;
    assert!(fleet.etcd.url().starts_with("https://"));
    fleet.init_cluster()?;
    fleet.add_backend("b1")?;
    fleet.add_backend("b2")?;
    let status = fleet.lbs[0].wait_for_members(&["b1", "b2"], STEP)?;
    assert_eq!(status["fleet"]["connected"], true, "{}", status["fleet"]);
    let load = LoadRun::start(&whoami(&fleet.lbs[0]), Duration::from_secs(3), &LOAD_ARGS);
    let summary = load.finish_without_errors()?;
    let served = summary["per_backend"].as_object().map(serde_json::Map::len);
    assert_eq!(served, Some(2), "{summary}");
    let snapshot = fleet.snapshot()?;
    assert_eq!((snapshot.lbs.len(), snapshot.members.len()), (1, 2));
    assert!(snapshot.cluster.is_some());

    let ca = fleet.etcd.ca_file().ok_or("a CA")?;
    let anonymous = run(
        "qlb cluster status",
        std::process::Command::new(env!("CARGO_BIN_EXE_qlb"))
            .args(["cluster", "status", "--etcd", &fleet.etcd.url()])
            .args(["--cluster", "edge", "--etcd-ca"])
            .arg(ca),
        STEP,
    )?;
    let said = String::from_utf8_lossy(&anonymous.stderr);
    assert!(!anonymous.status.success(), "{said}");
    assert!(
        said.contains("user name is empty") || said.contains("permission denied"),
        "{said}"
    );
    Ok(())
}

/// Each load balancer's fleet revision, once they agree (or after [`STEP`]).
fn converged(fleet: &Fleet) -> TestResult<Vec<i64>> {
    let agree = |revisions: &Vec<i64>| revisions.windows(2).all(|w| w[0] == w[1]);
    Ok(poll_blocking(STEP, || revisions(fleet), agree)?.into_inner())
}

/// Each load balancer's fleet revision.
fn revisions(fleet: &Fleet) -> TestResult<Vec<i64>> {
    fleet
        .lbs
        .iter()
        .map(|lb| {
            Ok(lb.status()?["fleet"]["revision"]
                .as_i64()
                .ok_or("no revision")?)
        })
        .collect()
}

/// The backend `lb` forwards each of `count` Initials (fixed connection IDs no backend
/// issued, each from a new client socket) to, read off its per-backend counters.
fn fallback_choices(lb: &FleetLb, count: u8) -> TestResult<Vec<String>> {
    let counts = |status: &Value| -> BTreeMap<String, u64> {
        status["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| {
                (
                    b["name"].as_str().unwrap_or_default().to_owned(),
                    b["to_backend"]["packets"].as_u64().unwrap_or_default(),
                )
            })
            .collect()
    };
    let mut choices = Vec::new();
    let mut before = counts(&lb.status()?);
    for n in 0..count {
        let mut initial = vec![0xc0, 0, 0, 0, 1, 8];
        initial.extend_from_slice(&[0xd0, 0x0d, 0xfe, 0xed, 0, 0, 0, n]);
        initial.extend_from_slice(&[0; 2]);
        initial.resize(1200, 0);
        UdpSocket::bind("127.0.0.1:0")?.send_to(&initial, lb.addr)?;
        let grown = || -> TestResult<Vec<String>> {
            Ok(counts(&lb.status()?)
                .into_iter()
                .filter(|(name, packets)| *packets > before.get(name).copied().unwrap_or(0))
                .map(|(name, _)| name)
                .collect())
        };
        match poll_blocking(Duration::from_secs(5), grown, |grown| grown.len() == 1)? {
            Polled::Held(mut grown) => choices.extend(grown.pop()),
            Polled::TimedOut(grown) => {
                return Err(format!("Initial {n}: forwarded to {grown:?}").into());
            }
        }
        before = counts(&lb.status()?);
    }
    Ok(choices)
}
