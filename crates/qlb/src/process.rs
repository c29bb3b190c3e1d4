//! What every long-running subcommand sets up first: logs on stderr and a tokio runtime.

use anyhow::{Context, Result};

/// Logs to stderr at `default` level unless `RUST_LOG` says otherwise.
pub(crate) fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// How many threads the runtime runs tasks on.
#[derive(Clone, Copy)]
pub(crate) enum Threads {
    /// One: light control work (the load balancer's data plane has threads of its own).
    One,
    /// One per core.
    PerCore,
}

/// A tokio runtime with I/O and timers.
pub(crate) fn runtime(threads: Threads) -> Result<tokio::runtime::Runtime> {
    let mut builder = match threads {
        Threads::One => tokio::runtime::Builder::new_current_thread(),
        Threads::PerCore => tokio::runtime::Builder::new_multi_thread(),
    };
    builder
        .enable_all()
        .build()
        .context("starting the async runtime")
}
