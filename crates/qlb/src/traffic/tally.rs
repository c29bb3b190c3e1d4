//! What a load run counts, and the summary it ends with: requests, errors by kind, rate,
//! latency percentiles, migrations, and the share of each backend. Pure: the load loop feeds
//! it outcomes, `qlb load` and `qlb demo` print it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::balancing::Balancing;
use super::connections::{Connections, Resumption};
use super::plot;

/// Latencies are recorded in microseconds, from 1 µs to 10 min, at 3 significant digits.
const LATENCY_MAX_US: u64 = 600_000_000;

/// The running count of one load run.
#[derive(Clone, Debug)]
pub(crate) struct Tally {
    requests: u64,
    errors: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
    per_backend: BTreeMap<String, u64>,
    migrations: u64,
    migrations_skipped: u64,
    migrations_failed: BTreeMap<String, u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            requests: 0,
            errors: BTreeMap::new(),
            // 1..=LATENCY_MAX_US at 3 digits is a valid histogram shape.
            latency_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                .unwrap_or_else(|_| unreachable!("constant bounds are valid")),
            per_backend: BTreeMap::new(),
            migrations: 0,
            migrations_skipped: 0,
            migrations_failed: BTreeMap::new(),
        }
    }
}

impl Tally {
    /// A request that got a response, after `latency`, served by `backend` when known.
    pub(crate) fn success(&mut self, latency: Duration, backend: Option<&str>) {
        self.requests += 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us
            .saturating_record(micros.clamp(1, LATENCY_MAX_US));
        if let Some(backend) = backend {
            *self.per_backend.entry(backend.to_owned()).or_default() += 1;
        }
    }

    /// A request that failed, by a short kind (`timeout`, `status_503`, `connection`, ...).
    pub(crate) fn error(&mut self, kind: &str) {
        self.requests += 1;
        *self.errors.entry(kind.to_owned()).or_default() += 1;
    }

    /// A connection migration (probe + switch) that completed.
    pub(crate) fn migration(&mut self) {
        self.migrations += 1;
    }

    /// A migration given up because its connection drained gracefully meanwhile.
    pub(crate) fn migration_skipped(&mut self) {
        self.migrations_skipped += 1;
    }

    /// A migration that did not complete, by kind (the connection itself may be fine).
    pub(crate) fn migration_failed(&mut self, kind: &str) {
        *self.migrations_failed.entry(kind.to_owned()).or_default() += 1;
    }

    /// Requests so far, answered or failed.
    pub(crate) fn requests(&self) -> u64 {
        self.requests
    }

    /// Failed requests so far.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The latency percentile points of the run so far, for its plot.
    pub(crate) fn latency_plot(&self) -> Vec<plot::Point> {
        plot::points(&self.latency_us)
    }

    /// The summary of a run that lasted `elapsed`.
    pub(crate) fn summary(&self, elapsed: Duration) -> Summary {
        let millis = |quantile: f64| self.latency_us.value_at_quantile(quantile) as f64 / 1000.0;
        let seconds = elapsed.as_secs_f64();
        Summary {
            requests: self.requests,
            errors: self.errors(),
            errors_by_kind: self.errors.clone(),
            rps: if seconds > 0.0 {
                self.requests as f64 / seconds
            } else {
                0.0
            },
            elapsed_s: seconds,
            latency_ms: Latency {
                p50: millis(0.5),
                p90: millis(0.9),
                p99: millis(0.99),
                max: self.latency_us.max() as f64 / 1000.0,
            },
            migrations: self.migrations,
            migrations_skipped: self.migrations_skipped,
            migrations_failed: self.migrations_failed.clone(),
            per_backend: self.per_backend.clone(),
            resumption: Resumption::default(),
            connections: Connections::default(),
            balancing: Balancing::default(),
            latency_plot: Vec::new(),
        }
    }
}

/// The end-of-run summary; `qlb load --json` prints it as one JSON object.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Summary {
    /// Requests made, answered or failed.
    pub requests: u64,
    /// Failed requests.
    pub errors: u64,
    /// Failed requests by kind.
    pub errors_by_kind: BTreeMap<String, u64>,
    /// Requests per second over the run.
    pub rps: f64,
    /// How long the run took, in seconds.
    pub elapsed_s: f64,
    /// Latency of answered requests, in milliseconds.
    pub latency_ms: Latency,
    /// Connection migrations done.
    pub migrations: u64,
    /// Migrations given up because their connection drained gracefully (GOAWAY, max age)
    /// while it was being moved.
    pub migrations_skipped: u64,
    /// Migrations that did not complete, by kind.
    pub migrations_failed: BTreeMap<String, u64>,
    /// Answered requests per backend (its server ID when the URL is a `/whoami`).
    pub per_backend: BTreeMap<String, u64>,
    /// What the clients' balancing did: ejections, aperture sizes, connections per server.
    pub balancing: Balancing,
    /// How the clients' connections resumed sessions and used 0-RTT.
    pub resumption: Resumption,
    /// What became of the clients' connections.
    pub connections: Connections,
    /// The latency percentile points, for `--histogram` (not in the JSON summary): filled
    /// once, at the end of the run ([`Tally::latency_plot`]), not by the live views'
    /// summaries every tick.
    #[serde(skip)]
    pub latency_plot: Vec<plot::Point>,
}

/// Latency percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub(crate) struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The slowest.
    pub max: f64,
}

impl Summary {
    /// Writes the run's latency percentile plot to `path` (SVG, or HTML for `.html`), titled
    /// `what` and the run's numbers.
    pub(crate) fn write_latency_plot(
        &self,
        path: &std::path::Path,
        what: &str,
    ) -> anyhow::Result<()> {
        let answered = self.requests.saturating_sub(self.errors);
        let latency = &self.latency_ms;
        let title = format!(
            "{what}: {answered} requests, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            latency.p50, latency.p99, latency.max
        );
        plot::write(path, &title, &self.latency_plot, answered)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "requests    {} in {:.1} s ({:.0} req/s)",
            self.requests, self.elapsed_s, self.rps
        )?;
        write!(f, "errors      {}", self.errors)?;
        for (kind, count) in &self.errors_by_kind {
            write!(f, "  {kind}: {count}")?;
        }
        writeln!(f)?;
        let latency = &self.latency_ms;
        writeln!(
            f,
            "latency ms  p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            latency.p50, latency.p90, latency.p99, latency.max
        )?;
        write!(f, "migrations  {}", self.migrations)?;
        if self.migrations_skipped > 0 {
            write!(
                f,
                "  skipped (connection drained): {}",
                self.migrations_skipped
            )?;
        }
        for (kind, count) in &self.migrations_failed {
            write!(f, "  failed {kind}: {count}")?;
        }
        writeln!(f)?;
        let c = &self.connections;
        writeln!(
            f,
            "connections opened {}  goaway {}  retired {}  lost {}",
            c.opened, c.goaway, c.retired, c.lost
        )?;
        let resumption = &self.resumption;
        writeln!(
            f,
            "0-RTT       resumed {}  accepted {}  rejected {}",
            resumption.resumed, resumption.zero_rtt_accepted, resumption.zero_rtt_rejected
        )?;
        let answered: u64 = self.per_backend.values().sum();
        if answered > 0 {
            writeln!(f, "per backend")?;
            for (backend, count) in &self.per_backend {
                let share = 100.0 * *count as f64 / answered as f64;
                writeln!(f, "  {backend:<12} {count:>9}  {share:5.1}%")?;
            }
        }
        write!(f, "{}", self.balancing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally() -> Tally {
        let mut tally = Tally::default();
        for ms in 1..=100 {
            tally.success(
                Duration::from_millis(ms),
                Some(if ms % 4 == 0 { "0002" } else { "0001" }),
            );
        }
        tally.error("timeout");
        tally.error("timeout");
        tally.error("status_503");
        tally.migration();
        tally.migration_failed("probe_timeout");
        tally.migration_skipped();
        tally
    }

    #[test]
    fn summary_counts_and_percentiles() {
        let summary = tally().summary(Duration::from_secs(2));
        assert_eq!(summary.requests, 103);
        assert_eq!(summary.errors, 3);
        assert_eq!(summary.errors_by_kind["timeout"], 2);
        assert!((summary.rps - 51.5).abs() < 1e-9);
        // 3 significant digits: within 0.1%.
        assert!(
            (summary.latency_ms.p50 - 50.0).abs() < 0.1,
            "{:?}",
            summary.latency_ms
        );
        assert!((summary.latency_ms.p90 - 90.0).abs() < 0.1);
        assert!((summary.latency_ms.p99 - 99.0).abs() < 0.1);
        assert!((summary.latency_ms.max - 100.0).abs() < 0.1);
        assert_eq!(summary.per_backend["0001"], 75);
        assert_eq!(summary.per_backend["0002"], 25);
        assert_eq!(summary.migrations, 1);
        assert_eq!(summary.migrations_skipped, 1);
        assert_eq!(summary.migrations_failed["probe_timeout"], 1);
    }

    #[test]
    fn json_has_the_documented_keys() {
        let json = serde_json::to_value(tally().summary(Duration::from_secs(1))).expect("json");
        for key in [
            "requests",
            "errors",
            "rps",
            "latency_ms",
            "migrations",
            "per_backend",
            "resumption",
            "connections",
        ] {
            assert!(json.get(key).is_some(), "{key}");
        }
        for key in ["p50", "p90", "p99", "max"] {
            assert!(json["latency_ms"].get(key).is_some(), "{key}");
        }
        assert_eq!(json["per_backend"]["0002"], 25);
        for key in ["resumed", "zero_rtt_accepted", "zero_rtt_rejected"] {
            assert_eq!(json["resumption"][key], 0, "{key}");
        }
    }

    #[test]
    fn display_shows_shares() {
        let text = tally().summary(Duration::from_secs(1)).to_string();
        assert!(text.contains("0001"), "{text}");
        assert!(text.contains("75.0%"), "{text}");
        assert!(text.contains("timeout: 2"), "{text}");
        assert!(text.contains("skipped (connection drained): 1"), "{text}");
    }

    #[test]
    fn absurd_latencies_are_clamped_not_lost() {
        let mut tally = Tally::default();
        tally.success(Duration::ZERO, None);
        tally.success(Duration::from_secs(100_000), None);
        let summary = tally.summary(Duration::from_secs(1));
        assert_eq!(summary.requests, 2);
        assert!(summary.latency_ms.max >= 600_000.0 * 0.999);
    }
}
