//! `qlb load` as scripts run it: the real binary through `qlb lb` to three `qlb serve`
//! backends, with `--json`, migrations on, the balancing pickers, distinct backends behind
//! the VIP, and its refusals of bad arguments.

mod support;

use std::process::Command;
use std::time::Duration;

use support::TestResult;
use support::cluster::{Cluster, Spec};
use support::process::run;

fn qlb_load(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_qlb"));
    command.arg("load").args(args);
    command
}

#[test]
fn load_through_the_load_balancer_reports_json_with_migrations() -> TestResult {
    let cluster = Cluster::start(Spec::default())?;
    let url = format!("https://{}/whoami", cluster.lbs[0].addr);
    let output = run(
        "qlb load",
        qlb_load(&[
            &url,
            "--insecure",
            "--connections",
            "12",
            "--concurrency",
            "12",
            "--duration",
            "3s",
            "--migrate-every",
            "200ms",
            "--json",
        ])
        .env("NO_COLOR", "1"),
        Duration::from_secs(60),
    )?;
    let stdout = String::from_utf8(output.stdout)?;
    let summary: serde_json::Value = serde_json::from_str(stdout.trim())?;
    eprintln!("{summary:#}");
    assert!(
        output.status.success(),
        "exit {:?}: {stdout}",
        output.status
    );
    assert!(summary["requests"].as_u64().unwrap_or(0) > 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert!(summary["rps"].as_f64().unwrap_or(0.0) > 0.0);
    for key in ["p50", "p90", "p99", "max"] {
        assert!(
            summary["latency_ms"][key].as_f64().is_some(),
            "{key}: {summary}"
        );
    }
    assert!(
        summary["migrations"].as_u64().unwrap_or(0) >= 3,
        "{summary}"
    );
    // 12 connections through the load balancer reach more than one backend, by server ID.
    let per_backend = summary["per_backend"].as_object().ok_or("per_backend")?;
    assert!(per_backend.len() >= 2, "{summary}");
    assert!(
        per_backend
            .keys()
            .all(|id| ["0001", "0002", "0003"].contains(&id.as_str()))
    );
    Ok(())
}

#[test]
fn a_request_count_is_exact() -> TestResult {
    let cluster = Cluster::start(Spec {
        backends: 1,
        ..Spec::default()
    })?;
    let url = format!("https://{}/bytes/100", cluster.backends[0].addr);
    let plot = cluster.dir().join("latency.html");
    let output = run(
        "qlb load",
        qlb_load(&[
            &url,
            "--insecure",
            "--requests",
            "250",
            "--concurrency",
            "8",
            "--json",
        ])
        .arg("--histogram")
        .arg(&plot),
        Duration::from_secs(60),
    )?;
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(summary["requests"], 250, "{summary}");
    // The latency plot: an HTML page around one SVG whose curve ends at the slowest request.
    let html = std::fs::read_to_string(&plot)?;
    assert!(html.starts_with("<!doctype html>"), "{html}");
    assert!(html.contains("<svg xmlns="), "{html}");
    assert!(html.contains("qlb load /bytes/100: 250 requests"), "{html}");
    assert_eq!(html.matches("<polyline").count(), 1, "{html}");
    assert_eq!(summary["errors"], 0, "{summary}");
    // Not a /whoami: answers are counted by backend address.
    let addr = cluster.backends[0].addr.to_string();
    assert_eq!(summary["per_backend"][addr.as_str()], 250, "{summary}");
    Ok(())
}

/// `qlb load --json` through `url` with `args`; its summary, after checking it succeeded.
fn load_summary(url: &str, args: &[&str]) -> TestResult<serde_json::Value> {
    let output = run(
        "qlb load",
        &mut qlb_load(&[&[url, "--insecure", "--json"], args].concat()),
        Duration::from_secs(60),
    )?;
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert!(output.status.success(), "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    Ok(summary)
}

#[test]
fn distinct_dialing_reaches_four_backends_behind_the_load_balancer_in_every_run() -> TestResult {
    let cluster = Cluster::start(Spec {
        backends: 4,
        ..Spec::default()
    })?;
    let url = format!("https://{}/whoami", cluster.lbs[0].addr);
    for run in 0..3 {
        let summary = load_summary(
            &url,
            &[
                "--distinct-backends",
                "--min-connections",
                "4",
                "--concurrency",
                "8",
                "--duration",
                "2s",
            ],
        )?;
        eprintln!("run {run}: {summary}");
        // One client, four connections, four server IDs; requests reached all four.
        let servers = summary["balancing"]["connections_by_server"]
            .as_object()
            .ok_or("connections_by_server")?;
        assert_eq!(servers.len(), 4, "run {run}: {summary}");
        assert!(
            servers.values().all(|count| count == 1),
            "run {run}: {summary}"
        );
        let per_backend = summary["per_backend"].as_object().ok_or("per_backend")?;
        assert_eq!(per_backend.len(), 4, "run {run}: {summary}");
    }
    Ok(())
}

#[test]
fn the_balancing_pickers_run_and_report() -> TestResult {
    let cluster = Cluster::start(Spec::default())?;
    let url = format!("https://{}/whoami", cluster.lbs[0].addr);
    for picker in ["ring-hash", "maglev", "wrr", "aperture"] {
        let summary = load_summary(
            &url,
            &[
                "--picker",
                picker,
                "--hash-keys",
                "16",
                "--hash-header",
                "x-user",
                "--outlier-detection",
                "--requests",
                "40",
            ],
        )?;
        assert_eq!(summary["requests"], 40, "{picker}: {summary}");
        let aperture = &summary["balancing"]["aperture"];
        assert_eq!(
            aperture.is_null(),
            picker != "aperture",
            "{picker}: {summary}"
        );
    }
    Ok(())
}

#[test]
fn failed_requests_are_counted_by_kind_and_fail_the_exit_code() -> TestResult {
    // Nothing listens there: every request fails to connect, within its timeout.
    let output = run(
        "qlb load",
        &mut qlb_load(&[
            "https://127.0.0.1:9/",
            "--insecure",
            "--requests",
            "3",
            "--timeout",
            "500ms",
            "--json",
        ]),
        Duration::from_secs(60),
    )?;
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert!(!output.status.success());
    assert_eq!(summary["errors"], 3, "{summary}");
    assert!(
        summary["errors_by_kind"]
            .as_object()
            .is_some_and(|kinds| !kinds.is_empty())
    );
    Ok(())
}

#[test]
fn bad_arguments_are_refused_with_the_reason() -> TestResult {
    for (args, expected) in [
        (&["https://127.0.0.1:4433/", "--insecure"][..], "--duration"),
        (
            &["http://127.0.0.1:4433/", "--insecure", "--requests", "1"][..],
            "https://",
        ),
        (
            &["https://127.0.0.1:4433/", "--requests", "1"][..],
            "--insecure",
        ),
        (
            &[
                "https://127.0.0.1:4433/",
                "--insecure",
                "--requests",
                "1",
                "--picker",
                "best",
            ][..],
            "round-robin",
        ),
        (
            &[
                "https://127.0.0.1:4433/",
                "--insecure",
                "--requests",
                "1",
                "--bounded-load",
                "0",
            ][..],
            "bounded_load",
        ),
        (
            &[
                "https://127.0.0.1:4433/",
                "--insecure",
                "--requests",
                "1",
                "--aperture-min",
                "5",
                "--aperture-max",
                "2",
            ][..],
            "aperture.min_aperture",
        ),
    ] {
        let output = run("qlb load", &mut qlb_load(args), Duration::from_secs(30))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
    Ok(())
}
