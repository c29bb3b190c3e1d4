//! `qlb lb`: run the load balancer from a TOML file, or check one. Scripts rely on this
//! interface: extend it, do not rename. A thin layer over [`qlb_lb::Balancer`]: signals
//! become reloads and a stop, and the process's file descriptor limit is raised for the
//! data plane's per-flow sockets (`proxy` mode; `gue` mode holds a constant few).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::process::{Threads, runtime};
use anyhow::{Context, Result};
use clap::Args;
use qlb_lb::Balancer;
use qlb_lb::config::LbConfig;
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Args)]
#[group(required = true, multiple = false)]
pub(crate) struct LbArgs {
    /// Run the load balancer from this TOML file (SIGHUP re-reads it, SIGTERM/SIGINT stop).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate this TOML file and exit: 0 if it is valid, 1 with the bad field named.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

impl LbArgs {
    pub(crate) fn run(self) -> Result<ExitCode> {
        if let Some(path) = self.check_config {
            // Loading validates everything, the routing pool included.
            load(&path)?;
            println!("{}: ok", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        let Some(path) = self.config else {
            unreachable!("clap requires --config or --check-config")
        };
        crate::process::init_logging("info");
        raise_open_files_limit();
        // The control plane (health checks, admin API, signals) is light: one thread. The data
        // plane runs its own worker threads.
        let runtime = runtime(Threads::One)?;
        runtime.block_on(run(path))?;
        Ok(ExitCode::SUCCESS)
    }
}

fn load(path: &Path) -> Result<LbConfig> {
    LbConfig::from_file(path).with_context(|| format!("reading {}", path.display()))
}

/// Each proxy-mode flow holds a socket: take the soft limit on open files up to the hard one.
fn raise_open_files_limit() {
    let limit = getrlimit(Resource::Nofile);
    if limit.current == limit.maximum {
        return;
    }
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!(limit = ?limit.maximum, "raised the open files limit"),
        Err(err) => tracing::warn!(
            %err,
            soft = ?limit.current,
            "cannot raise the open files limit: the flow table may run out of sockets"
        ),
    }
}

async fn run(path: PathBuf) -> Result<()> {
    let config = load(&path)?;
    let workers = config.workers.get();
    let balancer = Balancer::start(config, Some(path.clone()))
        .await
        .context("starting the load balancer")?;
    let addrs: Vec<String> = balancer
        .listen_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(workers, "load balancing on {}", addrs.join(", "));
    if !balancer.gue_addrs().is_empty() {
        let gue: Vec<String> = balancer
            .gue_addrs()
            .iter()
            .map(ToString::to_string)
            .collect();
        tracing::info!("GUE sockets on {}", gue.join(", "));
    }
    if let Some(admin) = balancer.admin_addr() {
        tracing::info!("admin API on http://{admin}");
    }

    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP")?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => {
                // The balancer logs what changed, or why the file was refused.
                let _ = balancer.reload().await;
            }
        }
    }
    tracing::info!("stopping");
    let stats = balancer
        .shutdown()
        .await
        .context("stopping the data plane")?;
    tracing::info!(flows = stats.flows_created, "stopped");
    Ok(())
}
