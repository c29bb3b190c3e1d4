//! Which backend serves the next request: pure choices over a snapshot of the candidates'
//! load, so that each policy is tested without sockets.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};
use thiserror::Error;

use crate::balancing::affinity::bounded;
use crate::balancing::affinity::table::{Scheme, Table};
use crate::balancing::wrr::stride;
use crate::sync::lock;

/// The latency a peak-EWMA picker assumes for a backend it has not measured yet: low enough
/// that new backends get tried, as linkerd's default RTT estimate.
pub(crate) const DEFAULT_LATENCY: Duration = Duration::from_millis(30);

/// How a client picks the backend of each request.
///
/// ```
/// use qlb_client::PickerKind;
///
/// let kind: PickerKind = "peak-ewma".parse()?;
/// assert_eq!(kind, PickerKind::PeakEwma);
/// assert_eq!(PickerKind::default(), PickerKind::RoundRobin);
/// # Ok::<(), qlb_client::UnknownPicker>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PickerKind {
    /// Each backend in turn (`round-robin`).
    #[default]
    RoundRobin,
    /// Uniformly at random (`random`).
    Random,
    /// The backend with the fewest requests in flight; ties broken at random
    /// (`least-loaded`).
    LeastLoaded,
    /// Of two backends drawn at random, the one with fewer requests in flight (`p2c`).
    PowerOfTwoChoices,
    /// Of two backends drawn at random, the one with the lower peak-EWMA latency times
    /// (requests in flight + 1); unmeasured backends count as 30 ms (`peak-ewma`).
    PeakEwma,
    /// Consistent hashing on a ring, with bounded loads (`ring-hash`): a request's key
    /// ([`HashKey`](crate::HashKey), or the [`HashPolicy`](crate::HashPolicy)'s header or
    /// cookie) goes to the same backend while the fleet is stable, and only a removed
    /// backend's keys move; no backend takes more than `ceil((1 + epsilon) * average)`
    /// requests in flight (the key walks on along the ring). Requests without a key go round
    /// robin.
    RingHash,
    /// Like [`PickerKind::RingHash`] over a Maglev table (`maglev`): even shares and fast
    /// lookups, for a little more disruption when the fleet changes.
    Maglev,
    /// Weighted round robin by the load backends report in their responses (`wrr`, gRPC's
    /// `weighted_round_robin`; [`WrrSettings`](crate::WrrSettings)): weight
    /// `qps / (utilization + eps / qps * penalty)`. Round robin until two backends report.
    Wrr,
    /// Power of two choices within an aperture (`aperture`, Finagle's deterministic
    /// aperture; [`ApertureSettings`](crate::ApertureSettings)): a window of the fleet sized
    /// by load, placed by the client's position among its peers.
    Aperture,
}

impl PickerKind {
    /// Every picker, in the order of their names in [`PickerKind::NAMES`].
    ///
    /// ```
    /// assert_eq!(qlb_client::PickerKind::ALL.len(), qlb_client::PickerKind::NAMES.len());
    /// ```
    pub const ALL: [PickerKind; 9] = [
        Self::RoundRobin,
        Self::Random,
        Self::LeastLoaded,
        Self::PowerOfTwoChoices,
        Self::PeakEwma,
        Self::RingHash,
        Self::Maglev,
        Self::Wrr,
        Self::Aperture,
    ];

    /// The names pickers parse from (command-line flags, configuration).
    ///
    /// ```
    /// assert!(qlb_client::PickerKind::NAMES.contains(&"p2c"));
    /// ```
    pub const NAMES: [&'static str; 9] = [
        "round-robin",
        "random",
        "least-loaded",
        "p2c",
        "peak-ewma",
        "ring-hash",
        "maglev",
        "wrr",
        "aperture",
    ];

    /// This picker's name.
    ///
    /// ```
    /// assert_eq!(qlb_client::PickerKind::LeastLoaded.name(), "least-loaded");
    /// ```
    pub fn name(self) -> &'static str {
        let index = Self::ALL.iter().position(|kind| *kind == self);
        index.map_or("unknown", |index| Self::NAMES[index])
    }
}

impl fmt::Display for PickerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A picker name that is not one of [`PickerKind::NAMES`].
///
/// ```
/// let err = "fastest".parse::<qlb_client::PickerKind>().unwrap_err();
/// assert!(err.to_string().contains("round-robin"));
/// ```
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("unknown picker {0:?}: expected one of {names}", names = PickerKind::NAMES.join(", "))]
pub struct UnknownPicker(String);

impl FromStr for PickerKind {
    type Err = UnknownPicker;

    fn from_str(name: &str) -> Result<Self, UnknownPicker> {
        Self::NAMES
            .iter()
            .position(|known| *known == name)
            .map(|index| Self::ALL[index])
            .ok_or_else(|| UnknownPicker(name.to_owned()))
    }
}

/// What a picker knows about one candidate.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Load {
    /// Requests in flight on the backend.
    pub(crate) in_flight: usize,
    /// Its peak-EWMA latency estimate; None until measured.
    pub(crate) latency: Option<Duration>,
    /// Its weight: from load reports (`wrr`; None until known), or the length of the
    /// aperture's arc over it (`aperture`).
    pub(crate) weight: Option<f64>,
}

impl Load {
    /// Peak EWMA's cost: latency x (in flight + 1), so an idle slow backend still costs its
    /// latency and a busy fast one its queue.
    fn cost(&self) -> f64 {
        self.latency.unwrap_or(DEFAULT_LATENCY).as_secs_f64() * (self.in_flight as f64 + 1.0)
    }
}

/// The index in `loads` that `kind` picks; None when `loads` is empty. `turn` is the round
/// robin counter, `rng` the randomness of the other policies.
#[must_use]
pub(crate) fn pick(
    kind: PickerKind,
    loads: &[Load],
    turn: usize,
    rng: &mut impl Rng,
) -> Option<usize> {
    let n = loads.len();
    if n <= 1 {
        return n.checked_sub(1);
    }
    Some(match kind {
        // The hashing and weighted pickers go round robin for what they cannot place.
        PickerKind::RoundRobin | PickerKind::RingHash | PickerKind::Maglev | PickerKind::Wrr => {
            turn % n
        }
        PickerKind::Random => rng.random_range(0..n),
        PickerKind::LeastLoaded => {
            // Scan from a random start so that ties do not all go to the first backend.
            let start = rng.random_range(0..n);
            (0..n)
                .map(|offset| (start + offset) % n)
                .min_by_key(|&index| loads[index].in_flight)
                .unwrap_or(start)
        }
        PickerKind::Aperture => {
            // Two points of a low-discrepancy sequence rather than random draws, so that a
            // client's shares match its arc's coverage closely even over few requests.
            let first = (turn as f64 * GOLDEN).fract();
            let (a, b) = (
                covering(loads, first),
                covering(loads, (first + 0.5).fract()),
            );
            if loads[b].in_flight < loads[a].in_flight {
                b
            } else {
                a
            }
        }
        PickerKind::PowerOfTwoChoices => {
            let (a, b) = two(n, rng);
            if loads[b].in_flight < loads[a].in_flight {
                b
            } else {
                a
            }
        }
        PickerKind::PeakEwma => {
            let (a, b) = two(n, rng);
            if loads[b].cost() < loads[a].cost() {
                b
            } else {
                a
            }
        }
    })
}

/// The golden ratio's fractional part: its multiples spread most evenly over [0, 1).
const GOLDEN: f64 = 0.618_033_988_749_894_9;

/// The candidate at `point` (in [0, 1)) of the line their weights (None: 1) divide.
fn covering(loads: &[Load], point: f64) -> usize {
    let weight = |load: &Load| load.weight.unwrap_or(1.0);
    let total: f64 = loads.iter().map(weight).sum();
    let mut at = point * total;
    for (index, load) in loads.iter().enumerate() {
        at -= weight(load);
        if at < 0.0 {
            return index;
        }
    }
    loads.len() - 1
}

/// Two distinct random indices below `n` (n >= 2).
fn two(n: usize, rng: &mut impl Rng) -> (usize, usize) {
    let a = rng.random_range(0..n);
    let b = (a + rng.random_range(1..n)) % n;
    (a, b)
}

/// What one pick is about, besides the candidates' loads.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Ask<'a> {
    /// Every backend of the client (what hashing places keys on, so that a backend that
    /// cannot serve for a while moves no other key).
    pub(crate) fleet: &'a [SocketAddr],
    /// The position in `fleet` of each candidate, in the order of their loads.
    pub(crate) members: &'a [usize],
    /// The request's affinity key hash, if it has one.
    pub(crate) key: Option<u64>,
    /// The attempt retries one that went elsewhere.
    pub(crate) retry: bool,
}

/// A [`PickerKind`] with its state: the round-robin turn (the stride scheduler's sequence
/// for `wrr`), a random generator, the hash table of the current fleet.
#[derive(Debug)]
pub(crate) struct Picker {
    kind: PickerKind,
    /// Bounded loads' slack: no backend above `ceil((1 + epsilon) * average)`.
    epsilon: f64,
    turn: AtomicUsize,
    rng: Mutex<SmallRng>,
    table: Mutex<Option<Table>>,
}

impl Picker {
    pub(crate) fn new(kind: PickerKind, epsilon: f64) -> Self {
        Self {
            kind,
            epsilon,
            turn: AtomicUsize::new(0),
            rng: Mutex::new(SmallRng::seed_from_u64(rand::random())),
            table: Mutex::new(None),
        }
    }

    /// Picks among `loads`. A retry does not take a round-robin turn: otherwise a backend
    /// that rejects every request would get the first attempt of every one (its rejection's
    /// retry taking the turn of the backend after it).
    #[must_use]
    pub(crate) fn pick(&self, loads: &[Load], ask: Ask<'_>) -> Option<usize> {
        let scheme = match self.kind {
            PickerKind::RingHash => Some(Scheme::Ring),
            PickerKind::Maglev => Some(Scheme::Maglev),
            _ => None,
        };
        if let (Some(scheme), Some(key)) = (scheme, ask.key) {
            return self.affine(scheme, loads, ask, key);
        }
        if self.kind == PickerKind::Wrr {
            let weights: Vec<Option<f64>> = loads.iter().map(|load| load.weight).collect();
            if let Some(scaled) = stride::scaled(&weights) {
                // The largest weight takes every turn: one pass over the candidates at most.
                return (0..=scaled.len()).find_map(|_| {
                    let sequence = self.turn.fetch_add(1, Ordering::Relaxed);
                    stride::turn(&scaled, sequence as u64)
                });
            }
        }
        let turn = if ask.retry {
            self.turn.load(Ordering::Relaxed)
        } else {
            self.turn.fetch_add(1, Ordering::Relaxed)
        };
        let mut rng = lock(&self.rng);
        pick(self.kind, loads, turn, &mut *rng)
    }

    /// The key's first preference with room under the bounded-load cap.
    fn affine(&self, scheme: Scheme, loads: &[Load], ask: Ask<'_>, key: u64) -> Option<usize> {
        let mut table = lock(&self.table);
        if !table.as_ref().is_some_and(|table| table.is_for(ask.fleet)) {
            *table = Some(Table::new(scheme, ask.fleet));
        }
        let table = table.as_ref()?;
        // The key's preference over the fleet, reduced to the candidates.
        let mut candidate = vec![None; ask.fleet.len()];
        for (index, &member) in ask.members.iter().enumerate() {
            if let Some(slot) = candidate.get_mut(member) {
                *slot = Some(index);
            }
        }
        let preference = table
            .preference(key)
            .filter_map(|member| candidate.get(member).copied().flatten());
        let in_flight = loads.iter().map(|load| load.in_flight).sum();
        let cap = bounded::cap(in_flight, loads.len(), self.epsilon);
        bounded::choose(preference, |index| loads[index].in_flight, cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> SmallRng {
        SmallRng::seed_from_u64(7)
    }

    fn idle(n: usize) -> Vec<Load> {
        vec![Load::default(); n]
    }

    /// How often each index is picked in `rounds` picks over fixed loads.
    fn histogram(kind: PickerKind, loads: &[Load], rounds: usize) -> Vec<usize> {
        let mut rng = rng();
        let mut counts = vec![0; loads.len()];
        for turn in 0..rounds {
            counts[pick(kind, loads, turn, &mut rng).expect("a pick")] += 1;
        }
        counts
    }

    #[test]
    fn names_round_trip() {
        for kind in PickerKind::ALL {
            assert_eq!(kind.name().parse::<PickerKind>(), Ok(kind));
            assert_eq!(kind.to_string(), kind.name());
        }
        assert!("least_loaded".parse::<PickerKind>().is_err());
    }

    #[test]
    fn no_candidates_no_pick_and_one_candidate_always() {
        for kind in PickerKind::ALL {
            assert_eq!(pick(kind, &[], 3, &mut rng()), None);
            assert_eq!(pick(kind, &idle(1), 3, &mut rng()), Some(0));
        }
    }

    #[test]
    fn round_robin_takes_turns() {
        let picks: Vec<_> = (0..7)
            .map(|turn| pick(PickerKind::RoundRobin, &idle(3), turn, &mut rng()))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0].map(Some));
    }

    #[test]
    fn random_spreads_evenly() {
        for count in histogram(PickerKind::Random, &idle(4), 4000) {
            assert!((800..1200).contains(&count), "{count}");
        }
    }

    #[test]
    fn least_loaded_takes_the_fewest_in_flight_and_spreads_ties() {
        let mut loads = idle(4);
        for (load, in_flight) in loads.iter_mut().zip([3, 1, 5, 1]) {
            load.in_flight = in_flight;
        }
        let counts = histogram(PickerKind::LeastLoaded, &loads, 1000);
        assert_eq!(counts[0] + counts[2], 0, "{counts:?}");
        assert!(
            counts[1] > 300 && counts[3] > 300,
            "ties not spread: {counts:?}"
        );
    }

    #[test]
    fn power_of_two_never_picks_the_busiest() {
        let mut loads = idle(3);
        loads[2].in_flight = 10;
        loads[1].in_flight = 1;
        let counts = histogram(PickerKind::PowerOfTwoChoices, &loads, 3000);
        // The busiest loses every draw; the idle one wins both of its pairs.
        assert_eq!(counts[2], 0, "{counts:?}");
        assert!(counts[0] > counts[1], "{counts:?}");
        // Two distinct candidates are always drawn.
        let mut rng = rng();
        for n in 2..6 {
            for _ in 0..100 {
                let (a, b) = two(n, &mut rng);
                assert!(a != b && a < n && b < n);
            }
        }
    }

    #[test]
    fn peak_ewma_weighs_latency_by_load_and_assumes_a_default() {
        let fast_busy = Load {
            in_flight: 3,
            latency: Some(Duration::from_millis(10)),
            weight: None,
        };
        let slow_idle = Load {
            in_flight: 0,
            latency: Some(Duration::from_millis(100)),
            weight: None,
        };
        // 10 ms x 4 < 100 ms x 1.
        assert_eq!(
            histogram(PickerKind::PeakEwma, &[fast_busy, slow_idle], 50),
            [50, 0]
        );
        // Unmeasured counts as 30 ms: better than 100 ms, worse than 10 ms.
        let unmeasured = Load::default();
        assert_eq!(
            histogram(PickerKind::PeakEwma, &[slow_idle, unmeasured], 50),
            [0, 50]
        );
        let fast_idle = Load {
            in_flight: 0,
            latency: Some(Duration::from_millis(10)),
            weight: None,
        };
        assert_eq!(
            histogram(PickerKind::PeakEwma, &[unmeasured, fast_idle], 50),
            [0, 50]
        );
    }

    #[test]
    fn the_stateful_picker_advances_its_turn() {
        let picker = Picker::new(PickerKind::RoundRobin, 0.25);
        let picks: Vec<_> = [false, false, true, false, true, false]
            .into_iter()
            .map(|retry| {
                picker.pick(
                    &idle(2),
                    Ask {
                        retry,
                        ..Ask::default()
                    },
                )
            })
            .collect();
        // Retries take no turn of their own.
        assert_eq!(picks, [0, 1, 0, 0, 1, 1].map(Some));
    }

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 7000 + i)))
            .collect()
    }

    #[test]
    fn hashing_pickers_keep_keys_and_go_round_robin_without_one() {
        for kind in [PickerKind::RingHash, PickerKind::Maglev] {
            let picker = Picker::new(kind, 0.25);
            let addrs = addrs(4);
            let ask = |key| Ask {
                fleet: &addrs,
                members: &[0, 1, 2, 3],
                key,
                retry: false,
            };
            for key in 0..50_u64 {
                let first = picker.pick(&idle(4), ask(Some(key)));
                assert!(first.is_some());
                assert_eq!(picker.pick(&idle(4), ask(Some(key))), first, "{kind}");
            }
            let unkeyed: Vec<_> = (0..4).map(|_| picker.pick(&idle(4), ask(None))).collect();
            let mut sorted = unkeyed.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, [0, 1, 2, 3].map(Some), "{kind}: {unkeyed:?}");
        }
    }

    #[test]
    fn a_hot_key_spills_over_once_its_backend_is_at_the_cap() {
        let picker = Picker::new(PickerKind::RingHash, 0.5);
        let addrs = addrs(4);
        let ask = Ask {
            fleet: &addrs,
            members: &[0, 1, 2, 3],
            key: Some(99),
            retry: false,
        };
        let home = picker.pick(&idle(4), ask).expect("a pick");
        let mut loads = idle(4);
        // 1.5 * (6 + 1) / 4 = 2.6: a cap of 3, and home has 3 already.
        loads[home].in_flight = 3;
        loads[(home + 1) % 4].in_flight = 3;
        let spilled = picker.pick(&loads, ask).expect("a pick");
        assert_ne!(spilled, home);
        assert!(loads[spilled].in_flight < 3);
    }

    #[test]
    fn aperture_picks_follow_the_arc_coverage_and_prefer_the_idle() {
        let mut loads = idle(2);
        loads[0].weight = Some(0.05);
        loads[1].weight = Some(0.15);
        let counts = histogram(PickerKind::Aperture, &loads, 1000);
        // Two points per pick, the less busy wins (ties: the first point): 1/4 and 3/4.
        assert!(counts[0].abs_diff(250) < 20, "{counts:?}");
        loads[1].in_flight = 1;
        let counts = histogram(PickerKind::Aperture, &loads, 1000);
        assert!(counts[0] > 400, "{counts:?}");
    }

    #[test]
    fn a_backend_out_of_the_candidates_moves_only_its_own_keys() {
        let picker = Picker::new(PickerKind::Maglev, 100.0);
        let fleet = addrs(5);
        let all = [0, 1, 2, 3, 4];
        let without_two = [0, 1, 3, 4];
        for key in 0..200_u64 {
            let ask = |members| Ask {
                fleet: &fleet,
                members,
                key: Some(key),
                retry: false,
            };
            let home = all[picker.pick(&idle(5), ask(&all)).expect("a pick")];
            let next = without_two[picker.pick(&idle(4), ask(&without_two)).expect("a pick")];
            if home != 2 {
                assert_eq!(next, home, "key {key} moved");
            }
            assert_ne!(next, 2);
        }
    }

    #[test]
    fn wrr_follows_reported_weights_and_round_robins_without_them() {
        let picker = Picker::new(PickerKind::Wrr, 0.25);
        let mut loads = idle(3);
        for (load, weight) in loads.iter_mut().zip([100.0, 100.0, 800.0]) {
            load.weight = Some(weight);
        }
        let mut counts = [0; 3];
        for _ in 0..1000 {
            counts[picker.pick(&loads, Ask::default()).expect("a pick")] += 1;
        }
        assert!(
            counts[2] > 750 && counts[0] > 60 && counts[1] > 60,
            "{counts:?}"
        );
        let unweighted: Vec<_> = (0..3)
            .map(|_| picker.pick(&idle(3), Ask::default()))
            .collect();
        let mut sorted = unweighted.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2].map(Some), "{unweighted:?}");
    }
}
