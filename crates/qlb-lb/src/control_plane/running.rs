//! The running state of the control plane, without I/O: the running configuration, admin
//! drains, health per backend, and how they combine into the routing pool. Every decision of
//! the daemon is made here and unit-tested; the control plane only locks, applies pools and
//! runs tasks.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;

use qlb_router::{BackendState, Pool, PoolError};
use thiserror::Error;

use super::reload::{ReloadError, ReloadReport, check_live_changes};
use super::snapshot::{AdminOverride, HealthStatus, ReloadCounts};
use crate::config::{BackendConfig, LbConfig};
use crate::health::{Health, HealthTracker, Outcome, Thresholds, Transition};

/// No backend of the running configuration has this name.
///
/// ```
/// let err = qlb_lb::daemon::UnknownBackend { name: "b9".into() };
/// assert_eq!(err.to_string(), "no backend named \"b9\"");
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Error)]
#[error("no backend named {name:?}")]
pub struct UnknownBackend {
    /// The name asked for.
    pub name: String,
}

/// The health record of one backend.
#[derive(Clone, Debug)]
struct BackendHealth {
    /// The address the record is about (where checks go): a backend that moves starts over.
    addr: SocketAddr,
    tracker: HealthTracker,
    passed: u64,
    failed: u64,
    transitions_up: u64,
    transitions_unready: u64,
    transitions_down: u64,
    last_failure: Option<String>,
}

impl BackendHealth {
    fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            tracker: HealthTracker::new(),
            passed: 0,
            failed: 0,
            transitions_up: 0,
            transitions_unready: 0,
            transitions_down: 0,
            last_failure: None,
        }
    }
}

/// The running configuration and what the control plane has learnt on top of it.
#[derive(Debug)]
pub(crate) struct Running {
    config: LbConfig,
    /// Bumped by every reload, so that results of checks started before are ignored.
    epoch: u64,
    drained: BTreeSet<String>,
    /// By backend name; empty when health checks are disabled.
    health: HashMap<String, BackendHealth>,
    reloads: ReloadCounts,
    stopped: bool,
}

impl Running {
    pub(crate) fn new(config: LbConfig) -> Self {
        let health = fresh_health(&config, &HashMap::new());
        Self {
            config,
            epoch: 0,
            drained: BTreeSet::new(),
            health,
            reloads: ReloadCounts::default(),
            stopped: false,
        }
    }

    pub(crate) fn config(&self) -> &LbConfig {
        &self.config
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    pub(crate) fn reloads(&self) -> ReloadCounts {
        self.reloads
    }

    /// Marks the balancer stopped: reloads are refused from now on.
    pub(crate) fn stop(&mut self) {
        self.stopped = true;
    }

    /// The backends to health-check (none when checks are disabled).
    pub(crate) fn checked_backends(&self) -> Vec<(std::sync::Arc<str>, SocketAddr)> {
        self.config
            .backends
            .iter()
            .filter(|b| self.health.contains_key(&b.name))
            .map(|b| (std::sync::Arc::from(b.name.as_str()), b.health_check_addr()))
            .collect()
    }

    pub(crate) fn admin_override(&self, name: &str) -> Option<AdminOverride> {
        self.drained.contains(name).then_some(AdminOverride::Drain)
    }

    /// The health record of `name`; `None` when checks are disabled.
    pub(crate) fn health(&self, name: &str) -> Option<HealthStatus> {
        self.health.get(name).map(|h| HealthStatus {
            state: h.tracker.health(),
            checks_passed: h.passed,
            checks_failed: h.failed,
            transitions_up: h.transitions_up,
            transitions_unready: h.transitions_unready,
            transitions_down: h.transitions_down,
            last_failure: h.last_failure.clone(),
        })
    }

    /// How the router treats `backend`: down if health checks find it silent; draining if
    /// they find it unready, or an operator drained it; else as the file says.
    #[must_use]
    pub(crate) fn effective_state(&self, backend: &BackendConfig) -> BackendState {
        let health = self
            .health
            .get(&backend.name)
            .map_or(Health::Unknown, |h| h.tracker.health());
        if health.is_down() {
            BackendState::Down
        } else if !health.takes_new_connections() || self.drained.contains(&backend.name) {
            BackendState::Draining
        } else {
            backend.state
        }
    }

    /// The routing pool for the current state.
    pub(crate) fn pool(&self) -> Result<Pool, PoolError> {
        self.config.pool_with(|b| self.effective_state(b))
    }

    /// Sets or clears the admin drain of `name`; returns whether the effective state
    /// changed, and the effective state now.
    pub(crate) fn set_drained(
        &mut self,
        name: &str,
        drained: bool,
    ) -> Result<(bool, BackendState), UnknownBackend> {
        let index = self
            .config
            .backends
            .iter()
            .position(|b| b.name == name)
            .ok_or_else(|| UnknownBackend {
                name: name.to_owned(),
            })?;
        let before = self.effective_state(&self.config.backends[index]);
        if drained {
            self.drained.insert(name.to_owned());
        } else {
            self.drained.remove(name);
        }
        let after = self.effective_state(&self.config.backends[index]);
        Ok((before != after, after))
    }

    /// Records one health check of `name` and returns the transition it causes. Results
    /// for names that are not (or no longer) checked are ignored.
    #[must_use = "a transition that changes routing must reach the pool"]
    pub(crate) fn record_check(&mut self, name: &str, outcome: Outcome) -> Option<Transition> {
        let thresholds = Thresholds::from(&self.config.health);
        let health = self.health.get_mut(name)?;
        match outcome.failure {
            None => health.passed += 1,
            Some(why) => {
                health.failed += 1;
                health.last_failure = Some(why);
            }
        }
        let transition = health.tracker.record(outcome.result, thresholds)?;
        match transition.to {
            Health::Up => health.transitions_up += 1,
            Health::Unready => health.transitions_unready += 1,
            Health::Down => health.transitions_down += 1,
            Health::Unknown => {}
        }
        Some(transition)
    }

    /// The state after a reload to `new`, and what changed; the running state is left as
    /// it is, so that nothing is half-applied if the caller then fails. Health records of
    /// backends that keep their name and address carry over (others start unknown and are
    /// checked at once), as do drains of backends that remain.
    pub(crate) fn reloaded(&self, new: LbConfig) -> Result<(Self, ReloadReport), ReloadError> {
        if self.stopped {
            return Err(ReloadError::Stopped);
        }
        check_live_changes(&self.config, &new)?;
        let report = ReloadReport::between(&self.config, &new);
        let drained = self
            .drained
            .iter()
            .filter(|name| new.backends.iter().any(|b| &b.name == *name))
            .cloned()
            .collect();
        let health = fresh_health(&new, &self.health);
        let next = Self {
            config: new,
            epoch: self.epoch + 1,
            drained,
            health,
            reloads: self.reloads,
            stopped: false,
        };
        Ok((next, report))
    }

    pub(crate) fn count_reload(&mut self, applied: bool) {
        if applied {
            self.reloads.applied += 1;
        } else {
            self.reloads.refused += 1;
        }
    }
}

/// Health records for `config`'s backends: `old` ones where name and checked address match,
/// new ones elsewhere; none when checks are disabled.
fn fresh_health(
    config: &LbConfig,
    old: &HashMap<String, BackendHealth>,
) -> HashMap<String, BackendHealth> {
    if !config.health.enabled {
        return HashMap::new();
    }
    config
        .backends
        .iter()
        .map(|b| {
            let record = old
                .get(&b.name)
                .filter(|h| h.addr == b.health_check_addr())
                .cloned()
                .unwrap_or_else(|| BackendHealth::new(b.health_check_addr()));
            (b.name.clone(), record)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control_plane::fixture::{CONFIG, config, variant};
    use crate::health::CheckResult;

    fn passed() -> Outcome {
        Outcome {
            result: CheckResult::Passed,
            failure: None,
        }
    }

    fn failed(why: &str) -> Outcome {
        Outcome {
            result: CheckResult::Failed,
            failure: Some(why.to_owned()),
        }
    }

    fn silent() -> Outcome {
        Outcome {
            result: CheckResult::NoAnswer,
            failure: Some("no answer".to_owned()),
        }
    }

    fn states(state: &Running) -> Vec<BackendState> {
        state
            .pool()
            .expect("pool")
            .backends()
            .iter()
            .map(|b| b.state())
            .collect()
    }

    use BackendState::{Active, Down, Draining};

    #[test]
    fn health_beats_admin_drain_which_beats_the_file() {
        let mut state = Running::new(config(CONFIG));
        assert_eq!(states(&state), [Active, Draining], "unknown health routes");
        assert_eq!(state.set_drained("b1", true), Ok((true, Draining)));
        assert_eq!(states(&state), [Draining, Draining]);
        assert_eq!(state.record_check("b1", silent()), None, "threshold 2");
        assert_eq!(
            state.record_check("b1", silent()).map(|t| t.to),
            Some(Health::Down)
        );
        assert_eq!(states(&state), [Down, Draining]);
        // Undrained while down: still down; then up again, back to the file's state.
        assert_eq!(state.set_drained("b1", false), Ok((false, Down)));
        let _ = state.record_check("b1", passed());
        assert_eq!(states(&state), [Down, Draining], "healthy_threshold is 2");
        let _ = state.record_check("b1", passed());
        assert_eq!(states(&state), [Active, Draining]);
        // Undraining a backend the file drains leaves it draining.
        assert_eq!(state.set_drained("b2", false), Ok((false, Draining)));
        assert_eq!(
            state.set_drained("b9", true),
            Err(UnknownBackend { name: "b9".into() })
        );
    }

    #[test]
    fn an_unready_backend_drains_and_a_silent_one_is_down() {
        let mut state = Running::new(config(CONFIG));
        let _ = state.record_check("b1", failed("HTTP status 503"));
        let _ = state.record_check("b1", failed("HTTP status 503"));
        assert_eq!(states(&state), [Draining, Draining]);
        let _ = state.record_check("b1", silent());
        let _ = state.record_check("b1", silent());
        assert_eq!(states(&state), [Down, Draining]);
        let health = state.health("b1").expect("checked");
        assert_eq!(
            (health.transitions_unready, health.transitions_down),
            (1, 1)
        );
    }

    #[test]
    fn health_records_count_checks_and_transitions() {
        let mut state = Running::new(config(CONFIG));
        let _ = state.record_check("b1", passed());
        let _ = state.record_check("b1", failed("HTTP status 503"));
        let _ = state.record_check("b1", silent());
        assert!(state.record_check("nobody", passed()).is_none());
        let health = state.health("b1").expect("checked");
        assert_eq!(health.state, Health::Down);
        assert_eq!((health.checks_passed, health.checks_failed), (1, 2));
        assert_eq!((health.transitions_up, health.transitions_down), (1, 1));
        assert_eq!(health.last_failure.as_deref(), Some("no answer"));
        assert_eq!(state.health("b2").map(|h| h.state), Some(Health::Unknown));
    }

    #[test]
    fn disabled_checks_leave_every_backend_to_the_file() {
        let mut state = Running::new(config(&format!("{CONFIG}\nenabled = false")));
        assert!(state.health("b1").is_none());
        assert!(state.checked_backends().is_empty());
        assert!(state.record_check("b1", silent()).is_none());
        assert_eq!(states(&state), [Active, Draining]);
    }

    #[test]
    fn a_reload_keeps_what_still_applies_and_bumps_the_epoch() {
        let mut state = Running::new(config(CONFIG));
        state.set_drained("b1", true).expect("b1");
        state.set_drained("b2", true).expect("b2");
        for _ in 0..2 {
            let _ = state.record_check("b1", silent());
            let _ = state.record_check("b2", silent());
        }
        // b2 moves to another address, b3 arrives.
        let new = config(
            &CONFIG
                .replacen("127.0.0.1:5002", "127.0.0.1:6002", 1)
                .replacen(
                    "[health]",
                    "[[backend]]\nname = \"b3\"\naddr = \"127.0.0.1:5003\"\n\
                     server_id = \"0003\"\n[health]",
                    1,
                ),
        );
        let (next, report) = state.reloaded(new).expect("valid reload");
        assert_eq!(report.backends_added, ["b3"]);
        assert_eq!(next.epoch(), state.epoch() + 1);
        assert_eq!(next.health("b1").map(|h| h.state), Some(Health::Down));
        assert_eq!(next.health("b2").map(|h| h.state), Some(Health::Unknown));
        assert_eq!(next.health("b3").map(|h| h.state), Some(Health::Unknown));
        assert_eq!(next.admin_override("b2"), Some(AdminOverride::Drain));
        assert_eq!(states(&next), [Down, Draining, Active]);
        assert_eq!(next.checked_backends().len(), 3);

        // b1 removed: its drain goes with it and does not come back with a new b1.
        let without_b1 = variant("name = \"b1\"", "name = \"b4\"");
        let (next, _) = state.reloaded(without_b1).expect("valid reload");
        let (again, _) = next.reloaded(config(CONFIG)).expect("valid reload");
        assert_eq!(again.admin_override("b1"), None);
        assert_eq!(again.health("b1").map(|h| h.state), Some(Health::Unknown));
    }

    #[test]
    fn a_refused_reload_changes_nothing_and_a_stopped_state_refuses_all() {
        let mut state = Running::new(config(CONFIG));
        let err = state
            .reloaded(variant("workers = 1", "workers = 2"))
            .expect_err("workers");
        assert!(err.to_string().starts_with("workers:"), "{err}");
        assert_eq!(state.epoch(), 0);
        state.count_reload(false);
        state.count_reload(true);
        assert_eq!(
            state.reloads(),
            ReloadCounts {
                applied: 1,
                refused: 1
            }
        );
        state.stop();
        assert!(matches!(
            state.reloaded(config(CONFIG)),
            Err(ReloadError::Stopped)
        ));
    }
}
