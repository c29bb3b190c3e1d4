//! Outlier detection, as Envoy's: a backend that fails `consecutive_failures` requests in a
//! row, or a `failure_rate` share of at least `min_requests` in one interval, is ejected (it
//! gets no requests while others can take them) for `base_ejection_time` times the number of
//! its recent ejections, at most `max_ejection_time`; never more than
//! `max_ejection_percent` of the fleet at once. Back from ejection it is watched afresh; each
//! interval it spends unejected forgives one past ejection. Pure: outcomes and `now` in,
//! ejections out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::error::{BuildError, MAX_TIMER};

/// When a backend counts as an outlier, and for how long it is ejected.
///
/// A failure is a 5xx response or a request that got no response (connection failure,
/// reset, timeout). Off unless set on the builder.
///
/// ```
/// use std::time::Duration;
/// use qlb_client::OutlierDetection;
///
/// let detection = OutlierDetection {
///     failure_rate: 0.3,
///     max_ejection_percent: 50,
///     ..OutlierDetection::default()
/// };
/// assert_eq!(detection.consecutive_failures, 5);
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OutlierDetection {
    /// Failures in a row that eject at once. Default 5; 0 turns this check off.
    pub consecutive_failures: u32,
    /// The failure share of an interval that ejects, above 0 and at most 1. Default 0.5.
    pub failure_rate: f64,
    /// Requests an interval must see for its failure share to count. Default 20.
    pub min_requests: u32,
    /// How often failure shares are judged (and ejections forgiven). Default 10 s.
    pub interval: Duration,
    /// Ejection time of a first ejection (the n-th recent one lasts n times as long).
    /// Default 30 s.
    pub base_ejection_time: Duration,
    /// The longest ejection. Default 300 s, never less than `base_ejection_time`.
    pub max_ejection_time: Duration,
    /// The most of the fleet ejected at once, in percent. Default 10 (Envoy's and gRPC's);
    /// below 10 backends that ejects none, so small fleets want more.
    pub max_ejection_percent: u8,
}

impl Default for OutlierDetection {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_rate: 0.5,
            min_requests: 20,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
        }
    }
}

impl OutlierDetection {
    /// Refuses settings out of range, naming the field.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        let field = |field, problem: &str| {
            Err(BuildError::Field {
                field,
                problem: problem.to_owned(),
            })
        };
        if !(self.failure_rate > 0.0 && self.failure_rate <= 1.0) {
            return field(
                "outlier_detection.failure_rate",
                "must be above 0 and at most 1",
            );
        }
        if self.max_ejection_percent > 100 {
            return field(
                "outlier_detection.max_ejection_percent",
                "must be at most 100",
            );
        }
        BuildError::check_duration("outlier_detection.interval", self.interval, MAX_TIMER)?;
        BuildError::check_duration(
            "outlier_detection.base_ejection_time",
            self.base_ejection_time,
            MAX_TIMER,
        )?;
        BuildError::check_duration(
            "outlier_detection.max_ejection_time",
            self.max_ejection_time,
            MAX_TIMER,
        )
    }

    fn ejection_time(&self, ejections: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(ejections.max(1))
            .min(self.max_ejection_time.max(self.base_ejection_time))
    }
}

/// What outlier detection knows of one backend.
#[derive(Clone, Copy, Debug, Default)]
struct Record {
    consecutive: u32,
    requests: u32,
    failures: u32,
    ejected_until: Option<Instant>,
    /// Recent ejections: the multiplier of the next ejection time.
    recent: u32,
    /// Ejections since the backend joined, for the numbers.
    total: u64,
}

/// One backend's standing in outlier detection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct OutlierStanding {
    pub(crate) ejected: bool,
    pub(crate) ejections: u64,
}

/// Outlier detection over a fleet.
#[derive(Debug)]
pub(crate) struct Outliers {
    settings: OutlierDetection,
    records: HashMap<SocketAddr, Record>,
    interval_start: Option<Instant>,
}

impl Outliers {
    pub(crate) fn new(settings: OutlierDetection) -> Self {
        Self {
            settings,
            records: HashMap::new(),
            interval_start: None,
        }
    }

    /// The fleet is now `addrs`: newcomers start clean, those gone are forgotten.
    pub(crate) fn set_fleet(&mut self, addrs: &[SocketAddr]) {
        self.records.retain(|addr, _| addrs.contains(addr));
        for addr in addrs {
            self.records.entry(*addr).or_default();
        }
    }

    /// A request to `addr` ended, `ok` or failed, at `now`; ejects it after too many
    /// failures in a row. Outcomes of an ejected backend (requests it had) are not counted.
    pub(crate) fn observe(&mut self, addr: SocketAddr, ok: bool, now: Instant) {
        self.tick(now);
        let threshold = self.settings.consecutive_failures;
        let Some(record) = self.records.get_mut(&addr) else {
            return;
        };
        if record.ejected_until.is_some() {
            return;
        }
        record.requests = record.requests.saturating_add(1);
        if ok {
            record.consecutive = 0;
            return;
        }
        record.failures = record.failures.saturating_add(1);
        record.consecutive = record.consecutive.saturating_add(1);
        if threshold > 0 && record.consecutive >= threshold {
            self.eject(addr, now);
        }
    }

    /// Brings back backends whose ejection is over and, once per interval, ejects those
    /// whose failure share was too high and forgives one ejection of the others.
    pub(crate) fn tick(&mut self, now: Instant) {
        self.judge_interval(now);
        for record in self.records.values_mut() {
            if record.ejected_until.is_some_and(|until| now >= until) {
                // Watched afresh.
                *record = Record {
                    recent: record.recent,
                    total: record.total,
                    ..Record::default()
                };
            }
        }
    }

    /// Once per interval: ejects those whose failure share was too high, forgives one
    /// ejection of the others that were not ejected.
    fn judge_interval(&mut self, now: Instant) {
        let start = *self.interval_start.get_or_insert(now);
        if now.saturating_duration_since(start) < self.settings.interval {
            return;
        }
        self.interval_start = Some(now);
        let mut outliers: Vec<(SocketAddr, f64)> = Vec::new();
        for (addr, record) in &mut self.records {
            if record.ejected_until.is_some() {
                continue;
            }
            let rate = f64::from(record.failures) / f64::from(record.requests.max(1));
            if record.requests >= self.settings.min_requests && rate >= self.settings.failure_rate {
                outliers.push((*addr, rate));
            } else {
                record.recent = record.recent.saturating_sub(1);
            }
            record.requests = 0;
            record.failures = 0;
        }
        // The worst first, while the ejection budget lasts.
        outliers.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for (addr, _) in outliers {
            self.eject(addr, now);
        }
    }

    fn eject(&mut self, addr: SocketAddr, now: Instant) {
        let ejected = self
            .records
            .values()
            .filter(|record| record.ejected_until.is_some())
            .count();
        let fleet = self.records.len();
        if (ejected + 1) * 100 > usize::from(self.settings.max_ejection_percent) * fleet {
            return;
        }
        let settings = self.settings;
        if let Some(record) = self.records.get_mut(&addr) {
            record.recent = record.recent.saturating_add(1);
            record.total += 1;
            record.ejected_until = Some(now + settings.ejection_time(record.recent));
            tracing::info!(backend = %addr, ejections = record.total, "outlier ejected");
        }
    }

    /// `addr`'s standing now (ejections over by `now` still show until the next tick).
    pub(crate) fn standing(&self, addr: SocketAddr, now: Instant) -> OutlierStanding {
        self.records
            .get(&addr)
            .map_or_else(OutlierStanding::default, |record| OutlierStanding {
                ejected: record.ejected_until.is_some_and(|until| now < until),
                ejections: record.total,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn fleet(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, 0, 3], 6000 + i)))
            .collect()
    }

    fn outliers(n: u16, settings: OutlierDetection) -> (Outliers, Vec<SocketAddr>) {
        let addrs = fleet(n);
        let mut outliers = Outliers::new(settings);
        outliers.set_fleet(&addrs);
        (outliers, addrs)
    }

    fn settings() -> OutlierDetection {
        OutlierDetection {
            consecutive_failures: 3,
            failure_rate: 0.4,
            min_requests: 10,
            interval: 10 * SEC,
            base_ejection_time: 30 * SEC,
            max_ejection_time: 100 * SEC,
            max_ejection_percent: 50,
        }
    }

    #[test]
    fn consecutive_failures_eject_for_the_base_time_then_it_is_watched_again() {
        let start = Instant::now();
        let (mut outliers, addrs) = outliers(4, settings());
        let bad = addrs[1];
        outliers.observe(bad, false, start);
        outliers.observe(bad, false, start);
        outliers.observe(bad, true, start);
        outliers.observe(bad, false, start);
        outliers.observe(bad, false, start);
        assert!(!outliers.standing(bad, start).ejected);
        outliers.observe(bad, false, start);
        assert_eq!(
            outliers.standing(bad, start),
            OutlierStanding {
                ejected: true,
                ejections: 1
            }
        );
        assert!(outliers.standing(bad, start + 29 * SEC).ejected);
        outliers.tick(start + 30 * SEC);
        assert!(!outliers.standing(bad, start + 30 * SEC).ejected);
        // Failing again at once: ejected twice as long.
        for _ in 0..3 {
            outliers.observe(bad, false, start + 31 * SEC);
        }
        assert!(outliers.standing(bad, start + 90 * SEC).ejected);
        assert!(!outliers.standing(bad, start + 91 * SEC).ejected);
        assert_eq!(outliers.standing(bad, start).ejections, 2);
    }

    #[test]
    fn a_high_failure_share_over_an_interval_ejects() {
        let start = Instant::now();
        let (mut outliers, addrs) = outliers(4, settings());
        // Half of 20 requests fail, never 3 in a row.
        for i in 0..20 {
            outliers.observe(addrs[0], i % 2 == 0, start + SEC);
            outliers.observe(addrs[2], i % 10 != 0, start + SEC);
        }
        assert!(!outliers.standing(addrs[0], start + SEC).ejected);
        // The interval began with the first outcome.
        outliers.tick(start + 10 * SEC);
        assert!(!outliers.standing(addrs[0], start + 10 * SEC).ejected);
        outliers.tick(start + 11 * SEC);
        assert!(outliers.standing(addrs[0], start + 11 * SEC).ejected);
        assert!(!outliers.standing(addrs[2], start + 11 * SEC).ejected);
    }

    #[test]
    fn too_few_requests_say_nothing() {
        let start = Instant::now();
        let (mut outliers, addrs) = outliers(2, settings());
        for i in 0..9 {
            outliers.observe(addrs[0], i % 2 == 0, start);
        }
        outliers.tick(start + 10 * SEC);
        assert!(!outliers.standing(addrs[0], start + 10 * SEC).ejected);
    }

    #[test]
    fn never_more_than_the_max_share_is_ejected() {
        let start = Instant::now();
        let (mut outliers, addrs) = outliers(4, settings());
        for addr in &addrs {
            for _ in 0..3 {
                outliers.observe(*addr, false, start);
            }
        }
        let ejected = addrs
            .iter()
            .filter(|addr| outliers.standing(**addr, start).ejected)
            .count();
        assert_eq!(ejected, 2);
        let none = OutlierDetection {
            max_ejection_percent: 0,
            ..settings()
        };
        let (mut outliers, addrs) = self::outliers(4, none);
        for _ in 0..3 {
            outliers.observe(addrs[0], false, start);
        }
        assert!(!outliers.standing(addrs[0], start).ejected);
    }

    #[test]
    fn ejection_times_grow_to_the_maximum_and_quiet_intervals_forgive() {
        let settings = settings();
        assert_eq!(settings.ejection_time(1), 30 * SEC);
        assert_eq!(settings.ejection_time(3), 90 * SEC);
        assert_eq!(settings.ejection_time(9), 100 * SEC);
        let start = Instant::now();
        let (mut outliers, addrs) = outliers(2, settings);
        for _ in 0..3 {
            outliers.observe(addrs[0], false, start);
        }
        // Back at 30 s; a quiet interval forgives the ejection: the next is 30 s again.
        outliers.tick(start + 30 * SEC);
        outliers.tick(start + 40 * SEC);
        outliers.tick(start + 50 * SEC);
        for _ in 0..3 {
            outliers.observe(addrs[0], false, start + 51 * SEC);
        }
        assert!(!outliers.standing(addrs[0], start + 81 * SEC).ejected);
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (bad, field) in [
            (
                OutlierDetection {
                    failure_rate: 0.0,
                    ..settings()
                },
                "outlier_detection.failure_rate",
            ),
            (
                OutlierDetection {
                    max_ejection_percent: 101,
                    ..settings()
                },
                "outlier_detection.max_ejection_percent",
            ),
            (
                OutlierDetection {
                    interval: Duration::ZERO,
                    ..settings()
                },
                "outlier_detection.interval",
            ),
        ] {
            let message = bad.validate().expect_err(field).to_string();
            assert!(message.starts_with(field), "{message}");
        }
        assert!(OutlierDetection::default().validate().is_ok());
    }
}
