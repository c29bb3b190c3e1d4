//! `qlb demo`: the whole system on loopback, on embedded defaults (no files, no root). A
//! load balancer and three backends start in this process; clients send HTTP/3 requests
//! through the load balancer while the script migrates client connections, drains and
//! restarts a backend, and rotates the QUIC-LB key to a new codepoint; then a report says
//! what survived. Exit code 0 only if nothing failed.

mod cluster;
mod report;
mod script;
mod view;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use qlb_client::{Client, Connection, Target, Trust};
use qlb_lb::config::parse_duration;

use crate::process::{Threads, runtime};
use crate::traffic::{Limit, Load, LoadSpec, LoadView};
use cluster::Cluster;
use report::{Cohort, Report};
use script::{RESTARTED, Step, migration_period, script};
use view::{BackendLine, LiveView};

/// Clients (one connection pool each) and requests in flight over them.
const CLIENTS: usize = 12;
const CONCURRENCY: usize = 24;
/// How long a drained backend may take to finish its requests.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Args)]
pub(crate) struct DemoArgs {
    /// How long the traffic runs.
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    duration: Duration,
    /// After the report, leave the cluster running and print how to reach it.
    #[arg(long)]
    keep_running: bool,
    /// Write the run's latency as an HdrHistogram percentile plot to this file: SVG, or an
    /// HTML page for a name ending in .html (self-contained either way).
    #[arg(long, value_name = "FILE")]
    histogram: Option<std::path::PathBuf>,
}

impl DemoArgs {
    pub(crate) fn run(self) -> Result<ExitCode> {
        crate::process::init_logging("error");
        let runtime = runtime(Threads::PerCore)?;
        runtime.block_on(self.demo())
    }

    async fn demo(self) -> Result<ExitCode> {
        let total = self.duration.max(Duration::from_secs(2));
        // Connections recycle (max connection age) four times a run, so the restarted backend
        // gets new connections well after it is healthy again.
        let mut cluster = Cluster::start(total / 4).await?;
        let mut view = LiveView::new(total);
        let mut report = Report {
            vip: cluster.vip.to_string(),
            backends: cluster
                .backends
                .iter()
                .map(|b| (b.name.to_owned(), b.server_id.to_string()))
                .collect(),
            restarted: cluster.backends[RESTARTED].name.to_owned(),
            ..Report::default()
        };
        println!(
            "qlb demo: load balancer on {} (UDP), backends {}; QUIC-LB codepoint 0, \
             single-pass AES with a random key",
            cluster.vip,
            cluster
                .backends
                .iter()
                .map(|b| format!("{} {} (server id {})", b.name, b.addr, b.server_id))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let clients = (0..CLIENTS)
            .map(|_| {
                Client::builder(Target::from(cluster.vip), Trust::Insecure)
                    .server_name("localhost")
                    .timeout(Duration::from_secs(5))
                    .zero_rtt(true)
                    .build()
                    .context("client settings")
            })
            .collect::<Result<Vec<_>>>()?;
        let load = Load::start(
            clients.clone(),
            LoadSpec {
                path: http::uri::PathAndQuery::from_static("/whoami"),
                concurrency: CONCURRENCY,
                limit: Limit::Manual,
                migrate_every: Some(migration_period(total)),
                keys: None,
            },
        );
        let live = load.view();
        view.step(
            Duration::ZERO,
            &format!(
                "{CLIENTS} clients, {CONCURRENCY} requests in flight; a connection migrates every {:?}",
                migration_period(total)
            ),
        );

        let mut restart_cohort = Vec::new();
        let mut rotation_cohort = Vec::new();
        let mut answered_before_restart = 0;
        let restarted_id = cluster.backends[RESTARTED].server_id.to_string();
        for (at, step) in script(total) {
            redraw_until(&mut view, &live, &cluster, at).await;
            let name = cluster.backends[RESTARTED].name;
            match step {
                Step::DrainAtLoadBalancer(index) => {
                    restart_cohort = connections(&clients);
                    cluster.drain_at_load_balancer(index).await?;
                    view.step(
                        at,
                        &format!("{name}: drained at the load balancer (no new connections)"),
                    );
                }
                Step::ShutDownBackend(index) => {
                    view.step(
                        at,
                        &format!("{name}: graceful shutdown (GOAWAY, in-flight requests finish)"),
                    );
                    cluster.shut_down(index, SHUTDOWN_TIMEOUT).await?;
                    view.step(live.elapsed(), &format!("{name}: stopped"));
                }
                Step::RestartBackend(index) => {
                    cluster.restart(index).await?;
                    answered_before_restart = answered_by(&live, &restarted_id);
                    view.step(at, &format!("{name}: restarted and undrained"));
                    report.restart_cohort = cohort(&restart_cohort).await;
                }
                Step::AddConfigAtLoadBalancer => {
                    rotation_cohort = connections(&clients);
                    let next = cluster.add_config_at_load_balancer().await?;
                    report.rotation = (0, next);
                    view.step(
                        at,
                        &format!("load balancer reloaded: decodes codepoints 0 and {next}"),
                    );
                }
                Step::RotateBackends => {
                    cluster.rotate_backends()?;
                    view.step(
                        at,
                        &format!(
                            "backends rotated: new CIDs use codepoint {}",
                            report.rotation.1
                        ),
                    );
                    report.rotation_cohort = cohort(&rotation_cohort).await;
                }
                Step::Stop => break,
            }
        }
        load.stop();
        let summary = load.finish().await;
        view.clear();
        report.served_after_restart = summary
            .per_backend
            .get(&restarted_id)
            .copied()
            .unwrap_or(0)
            .saturating_sub(answered_before_restart);
        if let Some(path) = &self.histogram {
            summary.write_latency_plot(path, "qlb demo")?;
        }
        report.first_connections = clients.len() as u64;
        report.traffic = Some(summary);
        print!("{report}");
        if let Some(path) = &self.histogram {
            println!("latency histogram: {}", path.display());
        }

        if self.keep_running {
            keep_running(&cluster).await?;
        }
        drop(clients);
        cluster.stop().await?;
        Ok(if report.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// Redraws the live view until `at` since the start.
async fn redraw_until(view: &mut LiveView, live: &LoadView, cluster: &Cluster, at: Duration) {
    loop {
        let now = live.elapsed();
        if now >= at {
            return;
        }
        let status = cluster.balancer.status().await;
        let backends: Vec<BackendLine> = status
            .backends
            .iter()
            .map(|backend| BackendLine {
                name: backend.name.clone(),
                server_id: backend.server_id.clone(),
                state: serde_json::to_value(backend)
                    .ok()
                    .and_then(|json| json["effective_state"].as_str().map(str::to_owned))
                    .unwrap_or_default(),
            })
            .collect();
        view.draw(now, &live.tally(), &backends);
        tokio::time::sleep((at - now).min(Duration::from_millis(250))).await;
    }
}

fn answered_by(live: &LoadView, server_id: &str) -> u64 {
    let summary = live.tally().summary(live.elapsed());
    summary.per_backend.get(server_id).copied().unwrap_or(0)
}

/// Every client's connections taking requests now.
fn connections(clients: &[Client]) -> Vec<Connection> {
    clients.iter().flat_map(Client::connections).collect()
}

/// What became of `connections` since they were taken: still serving (a request on each
/// succeeds now), drained gracefully, or failed.
async fn cohort(connections: &[Connection]) -> Cohort {
    let mut cohort = Cohort {
        open: connections.len() as u64,
        ..Cohort::default()
    };
    for connection in connections {
        if connection.is_draining() || connection.is_closed() {
            cohort.drained += 1;
            continue;
        }
        let request = http::Request::get("/whoami").body(String::new());
        let answered = match request {
            Ok(request) => tokio::time::timeout(Duration::from_secs(2), connection.send(request))
                .await
                .is_ok_and(|response| response.is_ok_and(|r| r.status().is_success())),
            Err(_) => false,
        };
        if answered {
            cohort.kept_serving += 1;
        } else if connection.is_draining() {
            // It received GOAWAY just now.
            cohort.drained += 1;
        } else {
            cohort.failed += 1;
        }
    }
    cohort
}

/// Prints how to reach the cluster and waits for Ctrl-C (or SIGTERM).
async fn keep_running(cluster: &Cluster) -> Result<()> {
    println!("\nThe cluster keeps running:");
    println!("  load balancer  {} (UDP)", cluster.vip);
    if let Some(admin) = cluster.balancer.admin_addr() {
        println!("  admin API      http://{admin}/status   http://{admin}/metrics");
    }
    for backend in &cluster.backends {
        println!(
            "  backend {:<6} {} (server id {})",
            backend.name, backend.addr, backend.server_id
        );
    }
    println!(
        "  try            qlb get https://{}/whoami --insecure",
        cluster.vip
    );
    println!(
        "                 qlb load https://{}/whoami --insecure --connections 8 --duration 10s",
        cluster.vip
    );
    println!("Ctrl-C stops it.");
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    Ok(())
}
