//! `qlb load`: an HTTP/3 load generator over the client-side balancing client, with a live
//! progress line and a summary (requests, errors by kind, rate, latency percentiles,
//! migrations, share per backend). Scripts rely on this interface and on the `--json` keys:
//! extend them, do not rename.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use qlb_client::{
    ApertureSettings, Client, ClientBuilder, Coordinate, HashPolicy, OutlierDetection, PickerKind,
};

use crate::client_args::{TrustArgs, Url};
use crate::durations::{up_to_a_day, up_to_a_year};
use crate::process::{Threads, runtime};
use crate::traffic::{Keys, Limit, Load, LoadSpec, Progress};

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
    /// How each client picks a backend: round-robin, random, least-loaded, p2c, peak-ewma,
    /// ring-hash, maglev (by the requests' keys: --hash-keys), wrr (by the backends' load
    /// reports), aperture (a load-sized window of the fleet per client).
    #[arg(long, default_value = "round-robin")]
    picker: PickerKind,
    /// Each request carries one of this many affinity keys (`key-0` ...), at random, for
    /// ring-hash and maglev.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    hash_keys: Option<u64>,
    /// Send the keys in this request header field, and hash on it (default: as an explicit
    /// key, no header).
    #[arg(long, value_name = "NAME", requires = "hash_keys")]
    hash_header: Option<http::HeaderName>,
    /// Bounded loads of ring-hash and maglev: no backend above ceil((1 + EPSILON) x the
    /// average requests in flight).
    #[arg(long, value_name = "EPSILON", default_value_t = 0.25)]
    bounded_load: f64,
    /// Eject backends that fail (5xx, no response) 5 times in a row or half their requests
    /// over 10 s (Envoy-style outlier detection).
    #[arg(long)]
    outlier_detection: bool,
    /// With --outlier-detection: the most of the fleet ejected at once, in percent.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u8).range(0..=100))]
    max_ejection_percent: u8,
    /// The aperture picker's smallest window, in backends (each client is placed by its
    /// index among --connections).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    aperture_min: u64,
    /// The aperture picker's largest window, in backends [default: the fleet].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    aperture_max: Option<u64>,
    /// Make each client's --min-connections connections reach distinct backends behind a
    /// load balancer's VIP (told by the qlb-server-id field of the responses), replacing
    /// duplicates.
    #[arg(long)]
    distinct_backends: bool,
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
    /// Write the run's latency as an HdrHistogram percentile plot to this file: SVG, or an
    /// HTML page for a name ending in .html (self-contained either way).
    #[arg(long, value_name = "FILE")]
    histogram: Option<PathBuf>,
}

impl LoadArgs {
    pub(crate) fn run(self) -> Result<ExitCode> {
        if self.requests == Some(0) {
            bail!("--requests must be at least 1");
        }
        let runtime = runtime(Threads::PerCore)?;
        runtime.block_on(self.load())
    }

    /// The balancing settings of client `index` (of --connections).
    fn balancing(&self, builder: ClientBuilder, index: usize) -> ClientBuilder {
        let mut builder = builder
            .picker(self.picker)
            .min_connections(self.min_connections)
            .distinct_backends(self.distinct_backends)
            .bounded_load(self.bounded_load)
            .aperture(ApertureSettings {
                min_aperture: usize::try_from(self.aperture_min).unwrap_or(usize::MAX),
                max_aperture: self
                    .aperture_max
                    .map_or(usize::MAX, |max| usize::try_from(max).unwrap_or(usize::MAX)),
                coordinate: Some(Coordinate {
                    index,
                    count: self.connections as usize,
                }),
                ..ApertureSettings::default()
            });
        if let Some(header) = &self.hash_header {
            builder = builder.hash_policy(HashPolicy::Header(header.clone()));
        }
        if self.outlier_detection {
            builder = builder.outlier_detection(OutlierDetection {
                max_ejection_percent: self.max_ejection_percent,
                ..OutlierDetection::default()
            });
        }
        if let Some(lifetime) = self.max_lifetime {
            builder = builder.max_lifetime(lifetime);
        }
        builder
    }

    async fn load(self) -> Result<ExitCode> {
        let trust = self.trust.trust()?;
        let clients = (0..self.connections)
            .map(|index| {
                let builder = Client::builder(self.url.target()?, trust.clone())
                    .server_name(&self.url.host)
                    .timeout(self.timeout)
                    .zero_rtt(self.zero_rtt);
                self.balancing(builder, index as usize)
                    .build()
                    .context("client settings")
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
                keys: self.hash_keys.map(|count| Keys {
                    count,
                    header: self.hash_header.clone(),
                }),
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
        if self.json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            print!("{summary}");
        }
        if let Some(path) = &self.histogram {
            summary.write_latency_plot(path, &format!("qlb load {}", self.url.path))?;
            if !self.json {
                println!("histogram   {}", path.display());
            }
        }
        Ok(if summary.errors == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        })
    }
}
