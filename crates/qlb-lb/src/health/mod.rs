//! Active health checks: per backend, a fresh QUIC handshake and an HTTP/3 `GET` of
//! `health.path` (through [`qlb_client::Prober`]) every `health.interval`, each within
//! `health.timeout`; a 2xx answer passes.
//!
//! The decision is pure and separate ([`HealthTracker`]: consecutive results against the
//! thresholds, transitions returned as values); this module's I/O part only runs probes and
//! reports their results. The [`Balancer`](crate::Balancer) feeds those into its trackers
//! and swaps the data plane's pool when a backend enters or leaves service.

mod tracker;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use qlb_client::{ProbeFailure, ProbeOutcome, Prober, QuicErrorKind};
use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use tokio::time::MissedTickBehavior;

use crate::config::HealthConfig;
pub use tracker::Health;
pub(crate) use tracker::{CheckResult, HealthTracker, Thresholds, Transition};

/// The TLS server name of every probe (backends' certificates are not verified: the check is
/// whether they accept connections and answer).
pub(crate) const PROBE_SERVER_NAME: &str = "localhost";

/// One check of one backend: its result and, for a failure, why.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Outcome {
    pub(crate) result: CheckResult,
    pub(crate) failure: Option<String>,
}

impl Outcome {
    /// Judges a probe: a 2xx passes; any other answer from the backend (a status, a refused
    /// handshake, a closed connection) fails with the backend alive; silence, or a
    /// connection that could not even start, is no answer.
    fn of(probe: Result<ProbeOutcome, ProbeFailure>) -> Self {
        use QuicErrorKind as Quic;
        let result = match &probe {
            Ok(outcome) if outcome.is_healthy() => CheckResult::Passed,
            Ok(_)
            | Err(ProbeFailure::Http3(_) | ProbeFailure::Request(_) | ProbeFailure::Uri(_)) => {
                CheckResult::Failed
            }
            Err(ProbeFailure::Connection(err))
                if matches!(
                    err.kind(),
                    Quic::VersionMismatch
                        | Quic::Transport { .. }
                        | Quic::ClosedByPeer { .. }
                        | Quic::ApplicationClosed { .. }
                        | Quic::Reset
                ) =>
            {
                CheckResult::Failed
            }
            Err(_) => CheckResult::NoAnswer,
        };
        let failure = match probe {
            Ok(outcome) if outcome.is_healthy() => None,
            Ok(outcome) => Some(format!("HTTP status {}", outcome.status)),
            Err(err) => Some(err.to_string()),
        };
        Self { result, failure }
    }
}

/// Starts one task per backend of `backends` that probes it at once and then every
/// `config.interval`, and hands each [`Outcome`] to `report`, on a blocking thread since
/// reporting may swap the data plane's pool. Abort the returned tasks to stop.
pub(crate) fn spawn_checks<R>(
    runtime: &Handle,
    prober: &Arc<Prober>,
    config: &HealthConfig,
    backends: impl IntoIterator<Item = (Arc<str>, SocketAddr)>,
    report: R,
) -> Vec<AbortHandle>
where
    R: Fn(&str, Outcome) + Send + Sync + 'static,
{
    let report = Arc::new(report);
    let path: Arc<str> = Arc::from(config.path.as_str());
    backends
        .into_iter()
        .map(|(name, addr)| {
            let check = Check {
                prober: Arc::clone(prober),
                name,
                addr,
                path: Arc::clone(&path),
                interval: config.interval,
                timeout: config.timeout,
            };
            runtime.spawn(check.run(Arc::clone(&report))).abort_handle()
        })
        .collect()
}

/// The checks of one backend.
struct Check {
    prober: Arc<Prober>,
    name: Arc<str>,
    addr: SocketAddr,
    path: Arc<str>,
    interval: Duration,
    timeout: Duration,
}

impl Check {
    async fn run<R>(self, report: Arc<R>)
    where
        R: Fn(&str, Outcome) + Send + Sync + 'static,
    {
        let mut ticks = tokio::time::interval(self.interval);
        // A slow check delays the next one rather than bunching checks up.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let result = self.probe().await;
            let (report, name) = (Arc::clone(&report), Arc::clone(&self.name));
            if tokio::task::spawn_blocking(move || report(&name, result))
                .await
                .is_err()
            {
                return;
            }
        }
    }

    async fn probe(&self) -> Outcome {
        Outcome::of(
            self.prober
                .probe(self.addr, PROBE_SERVER_NAME, &self.path, self.timeout)
                .await,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(status: u16) -> Result<ProbeOutcome, ProbeFailure> {
        Ok(ProbeOutcome {
            status: http::StatusCode::from_u16(status).expect("status"),
            elapsed: Duration::from_millis(1),
        })
    }

    #[test]
    fn answers_fail_alive_and_silence_is_no_answer() {
        let cases = [
            (answered(200), CheckResult::Passed, None),
            (answered(204), CheckResult::Passed, None),
            (
                answered(503),
                CheckResult::Failed,
                Some("HTTP status 503 Service Unavailable"),
            ),
            (
                Err(ProbeFailure::Connection(QuicErrorKind::Reset.into())),
                CheckResult::Failed,
                Some("QUIC: reset by peer"),
            ),
            (
                Err(ProbeFailure::Timeout(Duration::from_millis(500))),
                CheckResult::NoAnswer,
                Some("no answer within 500ms"),
            ),
            (
                Err(ProbeFailure::Connection(QuicErrorKind::TimedOut.into())),
                CheckResult::NoAnswer,
                Some("QUIC: timed out"),
            ),
        ];
        for (probe, result, failure) in cases {
            let outcome = Outcome::of(probe);
            assert_eq!(outcome.result, result, "{outcome:?}");
            assert_eq!(outcome.failure.as_deref(), failure);
        }
    }
}
