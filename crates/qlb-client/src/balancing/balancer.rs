//! The client's current backends and the choice among them: which backends may serve
//! (pure, [`eligible`]) and which one does (the picker); the loop that maintains their pools.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::balancing::backend::Backend;
use crate::balancing::picker::{Load, Picker, PickerKind};
use crate::connections::plan;
use crate::connections::shared::ConnectSettings;
use crate::discovery::resolver::BackendSet;
use crate::discovery::subset::subset;
use crate::error::Error;
use crate::stats::snapshot::ClientSnapshot;

/// How often the pools look at expiries, idleness and back-offs.
const MAINTENANCE_TICK: Duration = Duration::from_millis(100);

/// How far the resolver got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Resolution {
    /// No answer yet: requests wait for the first one.
    Pending,
    /// Backends are known (possibly none).
    Done,
    /// Resolving failed and no backend is known: why.
    Failed(String),
}

/// What eligibility looks at, per backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Standing {
    pub(crate) healthy: bool,
    /// Its last connection attempt failed.
    pub(crate) failing: bool,
    /// The attempt being retried went there.
    pub(crate) excluded: bool,
}

/// The indices of the backends a request may go to: healthy ones that connect and are not
/// excluded; failing that, healthy ones that are not excluded; failing that, any healthy
/// one. Empty when none is healthy.
#[must_use]
pub(crate) fn eligible(standings: &[Standing]) -> Vec<usize> {
    let tiers: [fn(&Standing) -> bool; 3] = [
        |s| s.healthy && !s.failing && !s.excluded,
        |s| s.healthy && !s.excluded,
        |s| s.healthy,
    ];
    tiers
        .iter()
        .map(|keep| {
            (0..standings.len())
                .filter(|&index| keep(&standings[index]))
                .collect::<Vec<_>>()
        })
        .find(|indices| !indices.is_empty())
        .unwrap_or_default()
}

/// Subsetting: keep at most `size` backends, chosen by rendezvous hashing on `client_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Subsetting {
    pub(crate) size: usize,
    pub(crate) client_id: u64,
}

/// The backends of a client and how requests are spread over them.
pub(crate) struct Balancer {
    backends: RwLock<Arc<[Arc<Backend>]>>,
    resolution: watch::Sender<Resolution>,
    picker: Picker,
    settings: Arc<ConnectSettings>,
    limits: plan::Limits,
    subsetting: Option<Subsetting>,
}

impl Balancer {
    pub(crate) fn new(
        picker: PickerKind,
        settings: Arc<ConnectSettings>,
        limits: plan::Limits,
        subsetting: Option<Subsetting>,
    ) -> Self {
        Self {
            backends: RwLock::new(Arc::new([])),
            resolution: watch::Sender::new(Resolution::Pending),
            picker: Picker::new(picker),
            settings,
            limits,
            subsetting,
        }
    }

    /// The current backends.
    pub(crate) fn backends(&self) -> Arc<[Arc<Backend>]> {
        self.backends
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// A snapshot of the backends, with the client's retry count.
    pub(crate) fn snapshot(&self, retries: u64) -> ClientSnapshot {
        ClientSnapshot {
            backends: self
                .backends()
                .iter()
                .map(|backend| backend.snapshot())
                .collect(),
            retries,
        }
    }

    /// The backend for one attempt, after the first resolution; `excluded` is the backend
    /// of the attempt being retried.
    pub(crate) async fn pick(&self, excluded: Option<SocketAddr>) -> Result<Arc<Backend>, Error> {
        let mut resolution = self.resolution.subscribe();
        let resolved = resolution
            .wait_for(|resolution| *resolution != Resolution::Pending)
            .await
            .map(|resolution| resolution.clone())
            .unwrap_or(Resolution::Done);
        let backends = self.backends();
        if backends.is_empty() {
            return Err(Error::NoBackends(match resolved {
                Resolution::Failed(why) => why,
                _ => "the target resolved to no address".to_owned(),
            }));
        }
        let standings: Vec<Standing> = backends
            .iter()
            .map(|backend| Standing {
                healthy: backend.is_healthy(),
                failing: backend.is_failing(),
                excluded: Some(backend.addr) == excluded,
            })
            .collect();
        let candidates = eligible(&standings);
        let now = Instant::now();
        let loads: Vec<Load> = candidates
            .iter()
            .map(|&index| backends[index].load(now))
            .collect();
        let chosen = self
            .picker
            .pick(&loads, excluded.is_some())
            .ok_or(Error::NoHealthyBackends(backends.len()))?;
        Ok(backends[candidates[chosen]].clone())
    }

    /// Every backend's pool stops: the client is gone.
    pub(crate) fn close(&self) {
        for backend in self.backends().iter() {
            backend.pool.close();
        }
    }
}

impl BackendSet for Balancer {
    /// Adopts the resolver's answer: backends that stay keep their pools and counters, new
    /// ones start, the others drain their connections.
    fn set_addrs(&self, addrs: &[SocketAddr]) {
        let mut unique = addrs.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let chosen = match self.subsetting {
            Some(Subsetting { size, client_id }) => subset(&unique, client_id, size),
            None => unique,
        };
        let mut backends = self
            .backends
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut old: HashMap<SocketAddr, Arc<Backend>> = backends
            .iter()
            .map(|backend| (backend.addr, backend.clone()))
            .collect();
        let next: Arc<[Arc<Backend>]> = chosen
            .iter()
            .map(|&addr| {
                old.remove(&addr).unwrap_or_else(|| {
                    tracing::info!(backend = %addr, "backend added");
                    Backend::new(addr, self.settings.clone(), self.limits)
                })
            })
            .collect();
        *backends = next;
        drop(backends);
        for gone in old.into_values() {
            tracing::info!(backend = %gone.addr, "backend removed");
            gone.pool.close();
        }
        self.resolution.send_replace(Resolution::Done);
    }

    /// Resolving failed: requests fail with `why` while no backend is known.
    fn resolution_failed(&self, why: String) {
        if self.backends().is_empty() {
            self.resolution.send_replace(Resolution::Failed(why));
        }
    }

    /// Whether at least half of the backends are unhealthy or fail to connect: a reason to
    /// ask DNS again early.
    fn half_unusable(&self) -> bool {
        let backends = self.backends();
        let unusable = backends
            .iter()
            .filter(|backend| !backend.is_healthy() || backend.is_failing())
            .count();
        !backends.is_empty() && 2 * unusable >= backends.len()
    }
}

/// Runs every pool's plan each tick: expiries, idleness, minimums, back-offs (the task is
/// aborted with the client).
pub(crate) async fn maintain(balancer: Arc<Balancer>) {
    let mut ticks = tokio::time::interval(MAINTENANCE_TICK);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for backend in balancer.backends().iter() {
            backend.pool.maintain();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standing(healthy: bool, failing: bool, excluded: bool) -> Standing {
        Standing {
            healthy,
            failing,
            excluded,
        }
    }

    #[test]
    fn healthy_connecting_backends_come_first() {
        let standings = [
            standing(true, false, false),
            standing(false, false, false),
            standing(true, true, false),
            standing(true, false, true),
            standing(true, false, false),
        ];
        assert_eq!(eligible(&standings), [0, 4]);
    }

    #[test]
    fn failing_backends_serve_when_no_other_healthy_one_does() {
        let standings = [standing(true, true, false), standing(false, false, false)];
        assert_eq!(eligible(&standings), [0]);
    }

    #[test]
    fn the_excluded_backend_serves_a_retry_only_when_it_is_the_last_healthy_one() {
        assert_eq!(
            eligible(&[standing(true, false, true), standing(true, true, false)]),
            [1]
        );
        assert_eq!(eligible(&[standing(true, false, true)]), [0]);
    }

    #[test]
    fn unhealthy_backends_never_serve() {
        assert!(eligible(&[standing(false, false, false), standing(false, true, true)]).is_empty());
        assert!(eligible(&[]).is_empty());
    }
}
