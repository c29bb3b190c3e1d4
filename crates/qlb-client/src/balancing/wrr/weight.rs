//! A backend's weight from its load reports, as gRPC's `weighted_round_robin` (gRFC A58):
//! `qps / (utilization + eps / qps * error_utilization_penalty)`, used only after a blackout
//! period of reports (so that a backend that just came up, or whose reports restarted, is
//! not judged on a few), dropped when no report came for the expiration period, and
//! recomputed once per update period (so that weights move in steps, not per request).

use std::time::{Duration, Instant};

use crate::balancing::wrr::report::LoadReport;
use crate::error::{BuildError, MAX_TIMER};

/// How `wrr` turns load reports into weights; gRPC's names and defaults.
///
/// ```
/// use std::time::Duration;
///
/// let wrr = qlb_client::WrrSettings {
///     blackout_period: Duration::from_secs(2),
///     ..qlb_client::WrrSettings::default()
/// };
/// assert_eq!(wrr.weight_update_period, Duration::from_secs(1));
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WrrSettings {
    /// Reports are used only once a backend has reported for this long. Default 10 s; zero
    /// uses them at once.
    pub blackout_period: Duration,
    /// Without a report for this long, a backend's weight is dropped (and the blackout
    /// starts again with its next report). Default 3 min.
    pub weight_expiration_period: Duration,
    /// Weights are recomputed this often. Default 1 s.
    pub weight_update_period: Duration,
    /// How much errors count as utilisation: the `eps / qps` share is multiplied by it.
    /// Default 1.0; at least 0.
    pub error_utilization_penalty: f64,
}

impl Default for WrrSettings {
    fn default() -> Self {
        Self {
            blackout_period: Duration::from_secs(10),
            weight_expiration_period: Duration::from_secs(180),
            weight_update_period: Duration::from_secs(1),
            error_utilization_penalty: 1.0,
        }
    }
}

impl WrrSettings {
    /// Refuses settings out of range, naming the field.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        if self.blackout_period > MAX_TIMER {
            return Err(BuildError::Field {
                field: "wrr.blackout_period",
                problem: "must be at most a day".to_owned(),
            });
        }
        BuildError::check_duration(
            "wrr.weight_expiration_period",
            self.weight_expiration_period,
            MAX_TIMER,
        )?;
        BuildError::check_duration(
            "wrr.weight_update_period",
            self.weight_update_period,
            MAX_TIMER,
        )?;
        if !(self.error_utilization_penalty.is_finite() && self.error_utilization_penalty >= 0.0) {
            return Err(BuildError::Field {
                field: "wrr.error_utilization_penalty",
                problem: "must be a finite number at least 0".to_owned(),
            });
        }
        Ok(())
    }
}

/// One backend's weight over time; pure, with the time passed in.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Weight {
    /// From the last usable report.
    latest: f64,
    /// Since when it has reported without a gap of the expiration period.
    non_empty_since: Option<Instant>,
    last_report: Option<Instant>,
    /// The weight the picker uses, and when it was computed.
    published: Option<f64>,
    published_at: Option<Instant>,
}

impl Weight {
    /// Takes a report received at `now`. A report with no traffic or no utilisation gives
    /// no weight and is ignored (as gRPC does).
    pub(crate) fn observe(&mut self, report: &LoadReport, now: Instant, settings: &WrrSettings) {
        if report.qps <= 0.0 || report.utilization <= 0.0 {
            return;
        }
        let errors = report.eps / report.qps * settings.error_utilization_penalty;
        let weight = report.qps / (report.utilization + errors);
        if !(weight.is_finite() && weight > 0.0) {
            return;
        }
        if self.expired(now, settings) {
            self.non_empty_since = None;
        }
        self.non_empty_since.get_or_insert(now);
        self.last_report = Some(now);
        self.latest = weight;
    }

    /// The weight to use at `now`: recomputed if the update period passed since the last
    /// time; None while in blackout, expired, or never reported.
    pub(crate) fn current(&mut self, now: Instant, settings: &WrrSettings) -> Option<f64> {
        let due = self
            .published_at
            .is_none_or(|at| now.saturating_duration_since(at) >= settings.weight_update_period);
        if due {
            self.published = self.usable(now, settings);
            self.published_at = Some(now);
        }
        self.published
    }

    fn usable(&mut self, now: Instant, settings: &WrrSettings) -> Option<f64> {
        if self.expired(now, settings) {
            self.non_empty_since = None;
            return None;
        }
        let since = self.non_empty_since?;
        (now.saturating_duration_since(since) >= settings.blackout_period).then_some(self.latest)
    }

    fn expired(&self, now: Instant, settings: &WrrSettings) -> bool {
        self.last_report
            .is_none_or(|at| now.saturating_duration_since(at) >= settings.weight_expiration_period)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn report(utilization: f64, qps: f64, eps: f64) -> LoadReport {
        LoadReport {
            utilization,
            qps,
            eps,
        }
    }

    fn settings() -> WrrSettings {
        WrrSettings {
            blackout_period: 10 * SEC,
            weight_expiration_period: 60 * SEC,
            weight_update_period: SEC,
            error_utilization_penalty: 1.0,
        }
    }

    #[test]
    fn the_weight_is_qps_over_utilization_plus_the_error_penalty() {
        let now = Instant::now();
        let settings = WrrSettings {
            blackout_period: Duration::ZERO,
            ..settings()
        };
        let mut weight = Weight::default();
        weight.observe(&report(0.5, 100.0, 0.0), now, &settings);
        assert_eq!(weight.current(now, &settings), Some(200.0));
        // 50 errors per second of 100: + 0.5 utilisation.
        weight.observe(&report(0.5, 100.0, 50.0), now, &settings);
        assert_eq!(weight.current(now + SEC, &settings), Some(100.0));
    }

    #[test]
    fn weights_wait_out_the_blackout_and_move_once_per_update_period() {
        let start = Instant::now();
        let settings = settings();
        let mut weight = Weight::default();
        weight.observe(&report(0.5, 100.0, 0.0), start, &settings);
        assert_eq!(weight.current(start + 9 * SEC, &settings), None);
        weight.observe(&report(0.5, 100.0, 0.0), start + 10 * SEC, &settings);
        assert_eq!(weight.current(start + 10 * SEC, &settings), Some(200.0));
        // A new report shows only at the next update.
        weight.observe(&report(1.0, 100.0, 0.0), start + 10 * SEC, &settings);
        let half = start + 10 * SEC + SEC / 2;
        assert_eq!(weight.current(half, &settings), Some(200.0));
        assert_eq!(weight.current(start + 11 * SEC, &settings), Some(100.0));
    }

    #[test]
    fn silent_backends_lose_their_weight_and_start_a_new_blackout() {
        let start = Instant::now();
        let settings = settings();
        let mut weight = Weight::default();
        weight.observe(&report(0.5, 100.0, 0.0), start, &settings);
        assert_eq!(weight.current(start + 20 * SEC, &settings), Some(200.0));
        assert_eq!(weight.current(start + 61 * SEC, &settings), None);
        // Reports again: blackout from now.
        weight.observe(&report(0.5, 100.0, 0.0), start + 62 * SEC, &settings);
        assert_eq!(weight.current(start + 70 * SEC, &settings), None);
        assert_eq!(weight.current(start + 72 * SEC, &settings), Some(200.0));
    }

    #[test]
    fn idle_or_unmeasured_reports_are_ignored() {
        let now = Instant::now();
        let settings = WrrSettings {
            blackout_period: Duration::ZERO,
            ..settings()
        };
        let mut weight = Weight::default();
        weight.observe(&report(0.0, 100.0, 0.0), now, &settings);
        weight.observe(&report(0.5, 0.0, 0.0), now, &settings);
        assert_eq!(weight.current(now, &settings), None);
    }

    #[test]
    fn bad_settings_name_their_field() {
        let bad = [
            (
                WrrSettings {
                    weight_update_period: Duration::ZERO,
                    ..settings()
                },
                "wrr.weight_update_period",
            ),
            (
                WrrSettings {
                    error_utilization_penalty: -1.0,
                    ..settings()
                },
                "wrr.error_utilization_penalty",
            ),
            (
                WrrSettings {
                    blackout_period: Duration::MAX,
                    ..settings()
                },
                "wrr.blackout_period",
            ),
        ];
        for (settings, field) in bad {
            let message = settings.validate().expect_err(field).to_string();
            assert!(message.starts_with(field), "{message}");
        }
        assert!(WrrSettings::default().validate().is_ok());
    }
}
