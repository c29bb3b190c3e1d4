//! The pure part of health checking: one backend's state from its check results and the
//! thresholds, with every change returned as a value.

use serde::Serialize;

use crate::config::HealthConfig;

/// What health checks say of a backend.
///
/// ```
/// use qlb_lb::daemon::Health;
///
/// assert!(Health::Down.is_down());
/// assert!(!Health::Unready.is_down(), "alive: its connections' packets still reach it");
/// assert!(!Health::Unready.takes_new_connections());
/// assert!(Health::Unknown.takes_new_connections(), "not checked yet: traffic flows");
/// assert_eq!(Health::Up.as_str(), "up");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Not checked yet. Routed like up, so that a cold start sends traffic at once; the first
    /// check decides either way.
    Unknown,
    /// Passing its checks.
    Up,
    /// Answering, but failing its checks (an HTTP status other than 2xx, a refused
    /// handshake): a backend that drains, or cannot take more. No new connections; packets of
    /// its connections still reach it, so that it can finish them.
    Unready,
    /// Not answering its checks: nothing reaches it. Its connections' packets go to the
    /// fallback, where a backend with the cluster secret resets them at once.
    Down,
}

impl Health {
    /// Every state, for metrics.
    pub const ALL: [Health; 4] = [Self::Unknown, Self::Up, Self::Unready, Self::Down];

    /// Whether the backend is out of service altogether: only [`Health::Down`] is.
    ///
    /// ```
    /// assert!(!qlb_lb::daemon::Health::Up.is_down());
    /// ```
    pub fn is_down(self) -> bool {
        self == Self::Down
    }

    /// Whether the backend may get new connections: unknown and up.
    ///
    /// ```
    /// assert!(!qlb_lb::daemon::Health::Down.takes_new_connections());
    /// ```
    pub fn takes_new_connections(self) -> bool {
        matches!(self, Self::Unknown | Self::Up)
    }

    /// A stable snake_case label, for metrics and logs.
    ///
    /// ```
    /// assert_eq!(qlb_lb::daemon::Health::Unknown.as_str(), "unknown");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Unready => "unready",
            Self::Down => "down",
        }
    }
}

/// The result of one check.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CheckResult {
    /// A 2xx answer.
    Passed,
    /// An answer, but not a healthy one: another status, a refused handshake, a closed
    /// connection. The backend is alive.
    Failed,
    /// No answer within the timeout, or the backend could not be reached.
    NoAnswer,
}

impl CheckResult {
    /// The state enough of these results in a row lead to.
    pub(crate) fn health(self) -> Health {
        match self {
            Self::Passed => Health::Up,
            Self::Failed => Health::Unready,
            Self::NoAnswer => Health::Down,
        }
    }
}

/// How many consecutive results change a backend's state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Thresholds {
    /// Consecutive passes that bring a failing backend up (at least 1).
    pub(crate) healthy: u32,
    /// Consecutive failures that take a backend out of new connections' choices, and
    /// consecutive failures of the other kind that move it between unready and down (at
    /// least 1).
    pub(crate) unhealthy: u32,
}

impl From<&HealthConfig> for Thresholds {
    fn from(config: &HealthConfig) -> Self {
        Self {
            healthy: config.healthy_threshold,
            unhealthy: config.unhealthy_threshold,
        }
    }
}

/// A change of a backend's [`Health`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[must_use = "a transition that changes routing must reach the pool"]
pub(crate) struct Transition {
    /// The state before.
    pub(crate) from: Health,
    /// The state after.
    pub(crate) to: Health,
}

impl Transition {
    /// Whether the routing pool changes: every transition does except from unknown to up
    /// (both route alike).
    pub(crate) fn changes_routing(&self) -> bool {
        self.from.takes_new_connections() != self.to.takes_new_connections()
            || self.from.is_down() != self.to.is_down()
    }
}

/// One backend's health from consecutive check results.
///
/// A backend starts [`Health::Unknown`], which routes like up, so that a cold start (a
/// restarted load balancer included) neither blackholes traffic while the first checks run
/// nor, on a busy machine whose first checks are slow, takes live backends down (which would
/// send their connections' packets elsewhere, to be reset). The first pass makes it up at
/// once; a dead backend is taken out after `unhealthy` checks, as an up one is. Then:
///
/// * `unhealthy` consecutive failures take an unknown or up backend unready or down, as the
///   last of them says ([`CheckResult::Failed`]: unready, [`CheckResult::NoAnswer`]: down);
/// * `unhealthy` consecutive failures of the other kind move it between unready and down (a
///   draining server that finally exits goes down; a restarted one that still refuses is
///   unready);
/// * `healthy` consecutive passes bring it up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct HealthTracker {
    health: Health,
    /// Consecutive passes.
    passes: u32,
    /// Consecutive failures, of any kind.
    failures: u32,
    /// Consecutive failures of the last failure's kind.
    same: u32,
    last_failure: Option<CheckResult>,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthTracker {
    /// A backend not checked yet.
    pub(crate) fn new() -> Self {
        Self {
            health: Health::Unknown,
            passes: 0,
            failures: 0,
            same: 0,
            last_failure: None,
        }
    }

    /// The current state.
    pub(crate) fn health(&self) -> Health {
        self.health
    }

    /// Records one check result and returns the state change it causes, if any.
    #[must_use = "a transition that changes routing must reach the pool"]
    pub(crate) fn record(
        &mut self,
        result: CheckResult,
        thresholds: Thresholds,
    ) -> Option<Transition> {
        let target = result.health();
        let enough = if result == CheckResult::Passed {
            self.passes += 1;
            self.failures = 0;
            self.same = 0;
            self.last_failure = None;
            self.passes >= thresholds.healthy || self.health == Health::Unknown
        } else {
            self.passes = 0;
            self.failures += 1;
            self.same = if self.last_failure == Some(result) {
                self.same + 1
            } else {
                1
            };
            self.last_failure = Some(result);
            match self.health {
                Health::Unknown | Health::Up => self.failures >= thresholds.unhealthy,
                Health::Unready | Health::Down => self.same >= thresholds.unhealthy,
            }
        };
        if target == self.health || !enough {
            return None;
        }
        let from = self.health;
        self.health = target;
        Some(Transition { from, to: target })
    }
}

#[cfg(test)]
mod tests {
    use super::CheckResult::{Failed, NoAnswer, Passed};
    use super::*;

    const T23: Thresholds = Thresholds {
        healthy: 2,
        unhealthy: 3,
    };

    /// The states after each result of `results` (`+` passed, `-` failed, `.` no answer),
    /// from `Unknown`.
    fn run(results: &str, thresholds: Thresholds) -> String {
        let mut tracker = HealthTracker::new();
        results
            .chars()
            .map(|c| {
                let result = match c {
                    '+' => Passed,
                    '-' => Failed,
                    _ => NoAnswer,
                };
                let before = tracker.health();
                let change = tracker.record(result, thresholds);
                // A transition is reported exactly when the state changes, and says so.
                match change {
                    Some(t) => assert_eq!((t.from, t.to), (before, tracker.health())),
                    None => assert_eq!(before, tracker.health()),
                }
                match tracker.health() {
                    Health::Unknown => '?',
                    Health::Up => 'U',
                    Health::Unready => 'R',
                    Health::Down => 'D',
                }
            })
            .collect()
    }

    #[test]
    fn a_first_pass_is_up_at_once_and_failures_need_the_threshold() {
        assert_eq!(run("+", T23), "U");
        assert_eq!(run("---", T23), "??R");
        assert_eq!(run("...", T23), "??D");
        assert_eq!(run("--+", T23), "??U");
    }

    #[test]
    fn it_takes_unhealthy_consecutive_failures_of_any_kind_to_leave_up() {
        assert_eq!(run("+--+---", T23), "UUUUUUR");
        assert_eq!(run("+.-.", T23), "UUUD", "the last failure's kind decides");
        assert_eq!(run("+-.-", T23), "UUUR");
    }

    #[test]
    fn it_takes_healthy_consecutive_passes_to_come_back() {
        assert_eq!(run("...+.++", T23), "??DDDDU");
        assert_eq!(run("---+-++", T23), "??RRRRU");
        // And the failure count starts over once up.
        assert_eq!(run("...++--+...", T23), "??DDUUUUUUD");
    }

    #[test]
    fn failures_of_the_other_kind_move_between_unready_and_down() {
        // A draining server refuses, then exits.
        assert_eq!(run("+---...", T23), "UUURRRD");
        // A restarted one answers again but refuses until ready.
        assert_eq!(run("...---+", T23), "??DDDRR");
        // Mixed failures move nothing.
        assert_eq!(run("-.-.-.", T23), "??RRRR");
    }

    #[test]
    fn thresholds_of_one_follow_every_result() {
        let one = Thresholds {
            healthy: 1,
            unhealthy: 1,
        };
        assert_eq!(run("+-+.-", one), "URUDR");
        // Zero behaves as one (the configuration refuses it anyway).
        let zero = Thresholds {
            healthy: 0,
            unhealthy: 0,
        };
        assert_eq!(run("+-+", zero), "URU");
    }

    #[test]
    fn every_transition_but_unknown_to_up_changes_routing() {
        for from in Health::ALL {
            for to in Health::ALL {
                let changes = Transition { from, to }.changes_routing();
                let expected = from != to
                    && !matches!(
                        (from, to),
                        (Health::Unknown, Health::Up) | (Health::Up, Health::Unknown)
                    );
                assert_eq!(changes, expected, "{from:?} -> {to:?}");
            }
        }
    }

    /// The examples the tracker's documentation gave when it was public.
    #[test]
    fn the_former_doc_examples_hold() {
        {
            let thresholds = Thresholds {
                healthy: 2,
                unhealthy: 2,
            };
            let mut tracker = HealthTracker::new();
            let _ = tracker.record(CheckResult::NoAnswer, thresholds);
            assert_eq!(
                tracker.health(),
                Health::Unknown,
                "one silent check is not enough"
            );
            let _ = tracker.record(CheckResult::NoAnswer, thresholds);
            assert_eq!(tracker.health(), Health::Down);
        }
        {
            assert_eq!(CheckResult::Failed.health(), Health::Unready);
            assert_eq!(CheckResult::NoAnswer.health(), Health::Down);
        }
        {
            assert_eq!(CheckResult::Passed.health(), Health::Up);
        }
        {
            use crate::config::HealthConfig;

            let thresholds = Thresholds::from(&HealthConfig::default());
            assert_eq!((thresholds.healthy, thresholds.unhealthy), (2, 2));
        }
        {
            let transition = Transition {
                from: Health::Up,
                to: Health::Down,
            };
            assert!(transition.changes_routing());
        }
        {
            assert!(
                !Transition {
                    from: Health::Unknown,
                    to: Health::Up
                }
                .changes_routing()
            );
            assert!(
                Transition {
                    from: Health::Unready,
                    to: Health::Down
                }
                .changes_routing()
            );
        }
        {
            use CheckResult::*;

            let thresholds = Thresholds {
                healthy: 2,
                unhealthy: 2,
            };
            let mut tracker = HealthTracker::new();
            assert_eq!(
                tracker.record(Passed, thresholds).map(|t| t.to),
                Some(Health::Up)
            );
            assert_eq!(
                tracker.record(Failed, thresholds),
                None,
                "one failure is not enough"
            );
            assert_eq!(
                tracker.record(Failed, thresholds).map(|t| t.to),
                Some(Health::Unready)
            );
            assert_eq!(tracker.record(NoAnswer, thresholds), None);
            assert_eq!(
                tracker.record(NoAnswer, thresholds).map(|t| t.to),
                Some(Health::Down)
            );
        }
        {
            assert_eq!(HealthTracker::new().health(), Health::Unknown);
        }
        {
            assert!(!HealthTracker::new().health().is_down());
        }
        {
            let thresholds = Thresholds {
                healthy: 3,
                unhealthy: 2,
            };
            let mut tracker = HealthTracker::new();
            assert_eq!(tracker.record(CheckResult::NoAnswer, thresholds), None);
            let second = tracker.record(CheckResult::NoAnswer, thresholds);
            assert_eq!(
                second,
                Some(Transition {
                    from: Health::Unknown,
                    to: Health::Down
                })
            );
        }
    }
}
