//! `qlb load`: an HTTP/3 load generator over the client-side balancing client, with a live
//! progress line and a summary (requests, errors by kind, rate, latency percentiles,
//! migrations, share per backend). Scripts rely on this interface and on the `--json` keys:
//! extend them, do not rename.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use qlb_client::{Client, PickerKind};

use crate::client_args::{TrustArgs, Url};
use crate::durations::{up_to_a_day, up_to_a_year};
use crate::process::{Threads, runtime};
use crate::traffic::{Limit, Load, LoadSpec, Progress, Resumption};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("limit").required(true).args(["duration", "requests"]))]
pub(crate) struct LoadArgs {
    /// `https://host[:port]/path`; a `/whoami` path tallies answers by server ID.
    url: Url,
    #[command(flatten)]
    trust: TrustArgs,
    /// Independent clients, each with its own connection pool (so at least this many
    /// connections through a load balancer VIP).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,
    /// Requests in flight at once, over all clients.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// Run this long (`10s`, `1m`).
    #[arg(long, value_parser = up_to_a_year)]
    duration: Option<Duration>,
    /// Send this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// How each client picks a backend: round-robin, random, least-loaded, p2c, peak-ewma.
    #[arg(long, default_value = "round-robin")]
    picker: PickerKind,
    /// Replace each connection after this long (+-10% jitter).
    #[arg(long, value_parser = up_to_a_year)]
    max_lifetime: Option<Duration>,
    /// Connections each client keeps open per backend.
    #[arg(long, default_value_t = 1)]
    min_connections: usize,
    /// Migrate one connection (new local port: probe, then switch) every period.
    #[arg(long, value_parser = up_to_a_day)]
    migrate_every: Option<Duration>,
    /// Per-request timeout.
    #[arg(long, value_parser = up_to_a_day, default_value = "10s")]
    timeout: Duration,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    /// Send GET/HEAD/OPTIONS requests as 0-RTT early data on new connections (replacements,
    /// reconnects) that resume a session the client kept; the summary's "0-RTT" line counts
    /// them. Without it sessions still resume, with nothing sent early.
    #[arg(long = "0rtt")]
    zero_rtt: bool,
}

impl LoadArgs {
    pub(crate) fn run(self) -> Result<ExitCode> {
        if self.requests == Some(0) {
            bail!("--requests must be at least 1");
        }
        let runtime = runtime(Threads::PerCore)?;
        runtime.block_on(self.load())
    }

    async fn load(self) -> Result<ExitCode> {
        let trust = self.trust.trust()?;
        let clients = (0..self.connections)
            .map(|_| {
                let mut builder = Client::builder(self.url.target()?, trust.clone())
                    .server_name(&self.url.host)
                    .picker(self.picker)
                    .min_connections(self.min_connections)
                    .timeout(self.timeout)
                    .zero_rtt(self.zero_rtt);
                if let Some(lifetime) = self.max_lifetime {
                    builder = builder.max_lifetime(lifetime);
                }
                builder.build().context("client settings")
            })
            .collect::<Result<Vec<_>>>()?;
        let limit = match (self.duration, self.requests) {
            (Some(duration), _) => Limit::Duration(duration),
            (None, Some(requests)) => Limit::Requests(requests),
            (None, None) => unreachable!("clap requires --duration or --requests"),
        };
        let load = Load::start(
            clients.clone(),
            LoadSpec {
                path: self.url.path.clone(),
                concurrency: self.concurrency as usize,
                limit,
                migrate_every: self.migrate_every,
            },
        );
        let progress = Progress::new(self.duration);
        let view = load.view();
        let finishing = load.finish();
        tokio::pin!(finishing);
        let mut ticks = tokio::time::interval(Duration::from_millis(250));
        let summary = loop {
            tokio::select! {
                summary = &mut finishing => break summary,
                _ = ticks.tick() => progress.draw(&view.tally(), view.elapsed()),
            }
        };
        progress.clear();
        let mut summary = summary;
        summary.resumption = resumption(&clients);
        if self.json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            print!("{summary}");
        }
        Ok(if summary.errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}

/// The clients' resumption and 0-RTT numbers, over every backend.
fn resumption(clients: &[Client]) -> Resumption {
    let mut total = Resumption::default();
    for backend in clients.iter().flat_map(|client| client.snapshot().backends) {
        total.resumed += backend.resumed;
        total.zero_rtt_accepted += backend.zero_rtt_accepted;
        total.zero_rtt_rejected += backend.zero_rtt_rejected;
    }
    total
}
