//! Active health checks: their settings, and the pure threshold logic that turns probe
//! results into healthy/unhealthy transitions.

use std::time::Duration;

use crate::error::{BuildError, MAX_TIMER};

/// Settings of the optional active health checker: every `interval`, each backend gets a
/// fresh-connection `GET path` (a [`Prober`](crate::Prober) probe) that must answer 2xx within
/// `timeout`. A backend turns unhealthy after `unhealthy_threshold` failures in a row and
/// healthy again after `healthy_threshold` successes in a row. Backends start healthy.
///
/// ```
/// use std::time::Duration;
/// use qlb_client::HealthCheck;
///
/// let check = HealthCheck { interval: Duration::from_secs(2), ..HealthCheck::default() };
/// assert_eq!(check.path, "/healthz");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The path to `GET`. Default `/healthz`.
    pub path: String,
    /// Time between two checks of a backend. Default 5 s; at most a day.
    pub interval: Duration,
    /// How long one check may take, handshake included. Default 1 s; at most `interval`.
    pub timeout: Duration,
    /// Successes in a row that make an unhealthy backend healthy. Default 2.
    pub healthy_threshold: u32,
    /// Failures in a row that make a healthy backend unhealthy. Default 2.
    pub unhealthy_threshold: u32,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: "/healthz".to_owned(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

impl HealthCheck {
    /// Refuses settings that cannot work, naming the field.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        let field = |field: &'static str, problem: &str| {
            Err(BuildError::Field {
                field,
                problem: problem.to_owned(),
            })
        };
        if !self.path.starts_with('/') {
            return field("health_check.path", "must start with '/'");
        }
        BuildError::check_duration("health_check.interval", self.interval, MAX_TIMER)?;
        if self.timeout.is_zero() || self.timeout > self.interval {
            return field(
                "health_check.timeout",
                "must be more than zero and at most the interval",
            );
        }
        if self.healthy_threshold == 0 {
            return field("health_check.healthy_threshold", "must be at least 1");
        }
        if self.unhealthy_threshold == 0 {
            return field("health_check.unhealthy_threshold", "must be at least 1");
        }
        Ok(())
    }
}

/// One backend's health as its check results come in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct HealthTracker {
    healthy: bool,
    /// Results in a row that disagree with `healthy`.
    streak: u32,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self {
            healthy: true,
            streak: 0,
        }
    }
}

impl HealthTracker {
    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy
    }

    /// Records one check result; returns the new state when it changed.
    pub(crate) fn observe(&mut self, ok: bool, check: &HealthCheck) -> Option<bool> {
        if ok == self.healthy {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let threshold = if ok {
            check.healthy_threshold
        } else {
            check.unhealthy_threshold
        };
        if self.streak < threshold {
            return None;
        }
        self.healthy = ok;
        self.streak = 0;
        Some(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(healthy: u32, unhealthy: u32) -> HealthCheck {
        HealthCheck {
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            ..HealthCheck::default()
        }
    }

    #[test]
    fn thresholds_count_results_in_a_row() {
        let check = check(2, 3);
        let mut tracker = HealthTracker::default();
        assert!(tracker.is_healthy());
        let results = [
            (false, None),
            (false, None),
            (true, None), // breaks the streak
            (false, None),
            (false, None),
            (false, Some(false)),
            (false, None),
            (true, None),
            (false, None), // breaks the streak
            (true, None),
            (true, Some(true)),
        ];
        for (step, (ok, change)) in results.into_iter().enumerate() {
            assert_eq!(tracker.observe(ok, &check), change, "step {step}");
        }
        assert!(tracker.is_healthy());
    }

    #[test]
    fn thresholds_of_one_flip_at_once() {
        let check = check(1, 1);
        let mut tracker = HealthTracker::default();
        assert_eq!(tracker.observe(false, &check), Some(false));
        assert_eq!(tracker.observe(true, &check), Some(true));
    }

    #[test]
    fn bad_settings_name_their_field() {
        for (bad, field) in [
            (
                HealthCheck {
                    path: "healthz".into(),
                    ..HealthCheck::default()
                },
                "health_check.path",
            ),
            (
                HealthCheck {
                    interval: Duration::ZERO,
                    ..HealthCheck::default()
                },
                "health_check.interval",
            ),
            (
                HealthCheck {
                    timeout: Duration::from_secs(6),
                    ..HealthCheck::default()
                },
                "health_check.timeout",
            ),
            (check(0, 1), "health_check.healthy_threshold"),
            (check(1, 0), "health_check.unhealthy_threshold"),
        ] {
            let message = bad.validate().expect_err(field).to_string();
            assert!(message.starts_with(field), "{message}");
        }
        assert!(HealthCheck::default().validate().is_ok());
    }
}
