//! The client's current backends and the choice among them: which backends may serve
//! (pure, [`eligible`]) and which one does (the picker); the loop that maintains their pools.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::balancing::aperture::{Aperture, ApertureSettings};
use crate::balancing::backend::{self, Backend, Picked};
use crate::balancing::outlier::{OutlierDetection, Outliers};
use crate::balancing::picker::{Ask, Load, Picker, PickerKind};
use crate::balancing::wrr::weight::WrrSettings;
use crate::connections::plan;
use crate::connections::shared::ConnectSettings;
use crate::discovery::resolver::BackendSet;
use crate::discovery::subset::subset;
use crate::error::Error;
use crate::stats::snapshot::ClientSnapshot;
use crate::sync::lock;

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
    /// Outlier detection ejected it.
    pub(crate) ejected: bool,
}

/// The indices of the backends a request may go to: healthy ones that connect and are
/// neither excluded nor ejected; failing that, healthy ones neither excluded nor ejected;
/// failing that, healthy ones not ejected; failing that, any healthy one. Empty when none is
/// healthy.
#[must_use]
pub(crate) fn eligible(standings: &[Standing]) -> Vec<usize> {
    let tiers: [fn(&Standing) -> bool; 4] = [
        |s| s.healthy && !s.failing && !s.excluded && !s.ejected,
        |s| s.healthy && !s.excluded && !s.ejected,
        |s| s.healthy && !s.ejected,
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

/// The candidates of a request (index, and its share of the aperture's arc with one): the
/// [`eligible`] backends of the aperture's `window` (index, arc length) when there is one
/// and it has any, else the eligible ones of the whole fleet.
#[must_use]
pub(crate) fn candidates(
    standings: &[Standing],
    window: Option<&[(usize, f64)]>,
) -> Vec<(usize, Option<f64>)> {
    if let Some(window) = window {
        let inside: Vec<Standing> = window.iter().map(|&(index, _)| standings[index]).collect();
        let chosen: Vec<(usize, Option<f64>)> = eligible(&inside)
            .iter()
            .map(|&i| (window[i].0, Some(window[i].1)))
            .collect();
        if !chosen.is_empty() {
            return chosen;
        }
    }
    eligible(standings)
        .into_iter()
        .map(|index| (index, None))
        .collect()
}

/// Subsetting: keep at most `size` backends, chosen by rendezvous hashing on `client_id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Subsetting {
    pub(crate) size: usize,
    pub(crate) client_id: u64,
}

/// How a client spreads its requests: the picker and its settings, outlier detection,
/// subsetting.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    pub(crate) picker: PickerKind,
    /// Bounded loads' slack for the hashing pickers.
    pub(crate) epsilon: f64,
    pub(crate) wrr: WrrSettings,
    pub(crate) outlier_detection: Option<OutlierDetection>,
    /// The `aperture` picker's window.
    pub(crate) aperture: ApertureSettings,
    pub(crate) subsetting: Option<Subsetting>,
}

/// The backends of a client and how requests are spread over them.
pub(crate) struct Balancer {
    backends: RwLock<Arc<[Arc<Backend>]>>,
    resolution: watch::Sender<Resolution>,
    picker: Picker,
    /// The window of the `aperture` picker (None with the others).
    aperture: Option<Mutex<Aperture>>,
    /// Held from reading the loads to reserving the chosen backend by the pickers whose
    /// guarantee needs exact counts (bounded loads): two picks must not both see room.
    serial: Option<Mutex<()>>,
    shared: backend::Shared,
    subsetting: Option<Subsetting>,
}

impl Balancer {
    pub(crate) fn new(
        policy: Policy,
        settings: Arc<ConnectSettings>,
        limits: plan::Limits,
    ) -> Self {
        let outliers = policy
            .outlier_detection
            .map(|detection| Arc::new(Mutex::new(Outliers::new(detection))));
        Self {
            backends: RwLock::new(Arc::new([])),
            resolution: watch::Sender::new(Resolution::Pending),
            picker: Picker::new(policy.picker, policy.epsilon),
            aperture: (policy.picker == PickerKind::Aperture)
                .then(|| Mutex::new(Aperture::new(policy.aperture, rand::random()))),
            serial: matches!(policy.picker, PickerKind::RingHash | PickerKind::Maglev)
                .then(Mutex::default),
            shared: backend::Shared {
                settings,
                limits,
                wrr: policy.wrr,
                outliers,
            },
            subsetting: policy.subsetting,
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
        let backends = self.backends();
        ClientSnapshot {
            backends: backends.iter().map(|backend| backend.snapshot()).collect(),
            retries,
            aperture: self
                .aperture
                .as_ref()
                .map(|aperture| lock(aperture).window(backends.len()).len()),
        }
    }

    /// The backend for one attempt, after the first resolution; `excluded` is the backend
    /// of the attempt being retried, `key` the request's affinity key hash.
    pub(crate) async fn pick(
        &self,
        excluded: Option<SocketAddr>,
        key: Option<u64>,
    ) -> Result<Picked, Error> {
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
        let _serial = self.serial.as_ref().map(lock);
        let now = Instant::now();
        self.tick_outliers(now);
        let standings: Vec<Standing> = backends
            .iter()
            .map(|backend| Standing {
                healthy: backend.is_healthy(),
                failing: backend.is_failing(),
                excluded: Some(backend.addr) == excluded,
                ejected: backend.is_ejected(now),
            })
            .collect();
        let window = self.window(&backends, now);
        let candidates = candidates(&standings, window.as_deref());
        let loads: Vec<Load> = candidates
            .iter()
            .map(|&(index, share)| {
                let load = backends[index].load(now);
                // The aperture weighs by arc coverage (evenly outside its window), not by
                // load reports.
                let weight = if window.is_some() { share } else { load.weight };
                Load { weight, ..load }
            })
            .collect();
        let fleet: Vec<SocketAddr> = backends.iter().map(|backend| backend.addr).collect();
        let members: Vec<usize> = candidates.iter().map(|&(index, _)| index).collect();
        let ask = Ask {
            fleet: &fleet,
            members: &members,
            key,
            retry: excluded.is_some(),
        };
        let chosen = self
            .picker
            .pick(&loads, ask)
            .ok_or(Error::NoHealthyBackends(backends.len()))?;
        Ok(backends[candidates[chosen].0].reserve())
    }

    /// The aperture's window over `backends` (index, arc length) after it took the load in
    /// flight; the pools outside it go on standby. None without aperture.
    fn window(&self, backends: &[Arc<Backend>], now: Instant) -> Option<Vec<(usize, f64)>> {
        let mut aperture = lock(self.aperture.as_ref()?);
        let in_flight = backends
            .iter()
            .map(|backend| backend.load(now).in_flight)
            .sum();
        aperture.observe(in_flight, backends.len());
        let window = aperture.window(backends.len());
        drop(aperture);
        for (index, backend) in backends.iter().enumerate() {
            backend
                .pool
                .set_standby(!window.iter().any(|&(i, _)| i == index));
        }
        Some(window)
    }

    /// Ends ejections that are over, judges the interval's failure shares.
    fn tick_outliers(&self, now: Instant) {
        if let Some(outliers) = &self.shared.outliers {
            lock(outliers).tick(now);
        }
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
                    Backend::new(addr, &self.shared)
                })
            })
            .collect();
        *backends = next;
        drop(backends);
        if let Some(outliers) = &self.shared.outliers {
            lock(outliers).set_fleet(&chosen);
        }
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
        balancer.tick_outliers(Instant::now());
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
            ejected: false,
        }
    }

    #[test]
    fn the_aperture_window_narrows_the_candidates_unless_none_in_it_can_serve() {
        let up = standing(true, false, false);
        let down = standing(false, false, false);
        let window = [(1, 0.25), (2, 0.5)];
        assert_eq!(
            candidates(&[up, up, up, up], Some(&window)),
            [(1, Some(0.25)), (2, Some(0.5))]
        );
        assert_eq!(
            candidates(&[up, up, down, up], Some(&window)),
            [(1, Some(0.25))]
        );
        assert_eq!(
            candidates(&[up, down, down, up], Some(&window)),
            [(0, None), (3, None)]
        );
        assert_eq!(candidates(&[up, down], None), [(0, None)]);
    }

    #[test]
    fn ejected_backends_serve_only_when_no_other_healthy_one_does() {
        let ejected = Standing {
            ejected: true,
            ..standing(true, false, false)
        };
        assert_eq!(eligible(&[ejected, standing(true, true, false)]), [1]);
        assert_eq!(eligible(&[ejected, standing(true, false, true)]), [1]);
        assert_eq!(eligible(&[ejected, standing(false, false, false)]), [0]);
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
