//! `qlb lb`: run the load balancer from a TOML file, or check one. Scripts rely on this
//! interface: extend it, do not rename.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use qlb_lb::config::LbConfig;
use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct LbArgs {
    /// Run the load balancer from this TOML file.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate this TOML file and exit: 0 if it is valid, 1 with the bad field named.
    #[arg(long, value_name = "FILE")]
    check_config: Option<PathBuf>,
}

impl LbArgs {
    pub fn run(self) -> Result<ExitCode> {
        if let Some(path) = self.check_config {
            let config = load(&path)?;
            config
                .pool(|_| false)
                .with_context(|| format!("{}: backend", path.display()))?;
            println!("{}: ok", path.display());
            return Ok(ExitCode::SUCCESS);
        }
        let Some(path) = self.config else {
            unreachable!("clap requires --config or --check-config")
        };
        tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
            )
            .with_writer(std::io::stderr)
            .init();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(run(path))?;
        Ok(ExitCode::SUCCESS)
    }
}

fn load(path: &std::path::Path) -> Result<LbConfig> {
    LbConfig::from_file(path).with_context(|| format!("reading {}", path.display()))
}

async fn run(path: PathBuf) -> Result<()> {
    let config = load(&path)?;
    let pool = config.pool(|_| false).context("backend")?;
    let dataplane = Dataplane::start(
        &config.listen,
        config.workers,
        Arc::new(pool),
        DataplaneOptions::from_config(&config),
    )
    .context("starting the data plane")?;
    let addrs: Vec<String> = dataplane
        .local_addrs()
        .iter()
        .map(ToString::to_string)
        .collect();
    tracing::info!(workers = config.workers.get(), "load balancing on {}", addrs.join(", "));

    let mut terminate = signal(SignalKind::terminate()).context("installing SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing SIGINT")?;
    let mut hangup = signal(SignalKind::hangup()).context("installing SIGHUP")?;
    loop {
        tokio::select! {
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
            _ = hangup.recv() => match load(&path).and_then(|c| c.pool(|_| false).context("backend")) {
                Ok(pool) => {
                    dataplane.set_pool(Arc::new(pool));
                    tracing::info!("reloaded {}", path.display());
                }
                Err(err) => tracing::error!("reload refused, the running config stays: {err:#}"),
            },
        }
    }
    dataplane.shutdown().context("stopping the data plane")?;
    tracing::info!("stopped");
    Ok(())
}
