//! Counters of one router: decisions by route, CID-routed datagrams by QUIC-LB codepoint,
//! drops by reason, traffic per backend. Plain
//! integers, owned by the worker that routes; the daemon takes snapshots and merges them.

use std::collections::BTreeMap;
use std::ops::AddAssign;
use std::sync::Arc;

use quic_lb::ConfigId;

use crate::decision::{Decision, DropReason, Route};
use crate::pool::Pool;

/// Datagrams and octets forwarded to one backend.
///
/// ```
/// use qlb_router::Traffic;
///
/// let mut total = Traffic { packets: 1, bytes: 1200 };
/// total += Traffic { packets: 2, bytes: 100 };
/// assert_eq!(total, Traffic { packets: 3, bytes: 1300 });
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Traffic {
    /// Datagrams.
    pub packets: u64,
    /// UDP payload octets.
    pub bytes: u64,
}

impl AddAssign for Traffic {
    fn add_assign(&mut self, other: Self) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

/// A copy of counters, from one router or merged from several. Every count only grows over
/// a router's life, whatever pools it is given, so they export as Prometheus counters.
///
/// ```
/// use qlb_router::{CounterSnapshot, DropReason, Pool, Route, Router};
/// use std::{sync::Arc, time::Instant};
///
/// let pool = Arc::new(Pool::new(quic_lb::Decoder::new(), [])?);
/// let (mut first, mut second) = (Router::new(pool.clone()), Router::new(pool));
/// let client = "198.51.100.7:5000".parse()?;
/// first.route(&[], client, Instant::now());
/// second.route(&[0x40; 32], client, Instant::now());
///
/// let mut total = CounterSnapshot::default();
/// total.merge(&first.counters());
/// total.merge(&second.counters());
/// assert_eq!(total.dropped(DropReason::Empty), 1);
/// assert_eq!(total.dropped(DropReason::NoBackend), 1);
/// assert_eq!(total.routed(Route::Fallback), 0);
/// assert_eq!(total.decisions(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct CounterSnapshot {
    routed: [u64; Route::ALL.len()],
    /// [`Route::Cid`] datagrams by the codepoint (config ID) their CID was decoded under.
    by_codepoint: [u64; ConfigId::COUNT],
    dropped: [u64; DropReason::ALL.len()],
    backends: BTreeMap<Arc<str>, Traffic>,
}

impl CounterSnapshot {
    /// Datagrams forwarded by `route`.
    ///
    /// ```
    /// use qlb_router::{CounterSnapshot, Route};
    ///
    /// assert_eq!(CounterSnapshot::default().routed(Route::Cid), 0);
    /// ```
    pub fn routed(&self, route: Route) -> u64 {
        self.routed.get(route as usize).copied().unwrap_or(0)
    }

    /// Datagrams routed by the server ID in their CID ([`Route::Cid`]) under the QUIC-LB
    /// configuration with this codepoint: during a key rotation, the old codepoint's count
    /// stops growing once its connections are gone.
    ///
    /// ```
    /// use qlb_router::CounterSnapshot;
    /// use quic_lb::ConfigId;
    ///
    /// assert_eq!(CounterSnapshot::default().routed_by_codepoint(ConfigId::new(0)?), 0);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn routed_by_codepoint(&self, config_id: ConfigId) -> u64 {
        self.by_codepoint
            .get(usize::from(config_id.get()))
            .copied()
            .unwrap_or(0)
    }

    /// Datagrams dropped for `reason`.
    ///
    /// ```
    /// use qlb_router::{CounterSnapshot, DropReason};
    ///
    /// assert_eq!(CounterSnapshot::default().dropped(DropReason::Truncated), 0);
    /// ```
    pub fn dropped(&self, reason: DropReason) -> u64 {
        self.dropped.get(reason as usize).copied().unwrap_or(0)
    }

    /// Every decision: datagrams forwarded plus datagrams dropped.
    ///
    /// ```
    /// assert_eq!(qlb_router::CounterSnapshot::default().decisions(), 0);
    /// ```
    pub fn decisions(&self) -> u64 {
        self.routed.iter().chain(&self.dropped).sum()
    }

    /// Traffic per backend name, sorted by name; a backend appears once it has been
    /// forwarded to, and stays after it leaves the pool.
    ///
    /// ```
    /// use qlb_router::{Backend, Pool, Router, Traffic};
    /// use std::{sync::Arc, time::Instant};
    ///
    /// let pool = Pool::new(quic_lb::Decoder::new(), [Backend::new("a", "192.0.2.1:443".parse()?)])?;
    /// let mut router = Router::new(Arc::new(pool));
    /// router.route(&[0x40; 30], "198.51.100.7:5000".parse()?, Instant::now());
    /// let counters = router.counters();
    /// let traffic: Vec<(&str, Traffic)> = counters.backends().collect();
    /// assert_eq!(traffic, [("a", Traffic { packets: 1, bytes: 30 })]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backends(&self) -> impl Iterator<Item = (&str, Traffic)> {
        self.backends
            .iter()
            .map(|(name, traffic)| (name.as_ref(), *traffic))
    }

    /// Adds `other` in: the sum over workers.
    ///
    /// ```
    /// use qlb_router::CounterSnapshot;
    ///
    /// let mut total = CounterSnapshot::default();
    /// total.merge(&CounterSnapshot::default());
    /// assert_eq!(total, CounterSnapshot::default());
    /// ```
    pub fn merge(&mut self, other: &CounterSnapshot) {
        add_counts(&mut self.routed, &other.routed);
        add_counts(&mut self.by_codepoint, &other.by_codepoint);
        add_counts(&mut self.dropped, &other.dropped);
        for (name, traffic) in &other.backends {
            self.add_traffic(name, *traffic);
        }
    }

    /// Adds traffic counted by backend index of `pool`; idle backends are left out.
    fn fold(&mut self, pool: &Pool, traffic: &[Traffic]) {
        for (backend, traffic) in pool.backends().iter().zip(traffic) {
            if traffic.packets > 0 {
                self.add_traffic(backend.shared_name(), *traffic);
            }
        }
    }

    fn add_traffic(&mut self, name: &Arc<str>, traffic: Traffic) {
        *self.backends.entry(Arc::clone(name)).or_default() += traffic;
    }
}

fn add_counts(into: &mut [u64], from: &[u64]) {
    into.iter_mut().zip(from).for_each(|(a, b)| *a += b);
}

/// The live counters of a router. Traffic is kept by backend index of the current pool, so
/// counting a datagram is an array increment; a pool swap folds it into `totals` by name.
#[derive(Debug)]
pub(crate) struct Counters {
    totals: CounterSnapshot,
    traffic: Vec<Traffic>,
}

impl Counters {
    pub(crate) fn new(pool: &Pool) -> Self {
        Self {
            totals: CounterSnapshot::default(),
            traffic: vec![Traffic::default(); pool.backends().len()],
        }
    }

    /// Counts one decision about a datagram of `bytes` octets.
    pub(crate) fn count(&mut self, decision: &Decision, bytes: usize) {
        let count = match decision {
            Decision::Forward(forward) => {
                if let Some(traffic) = self.traffic.get_mut(forward.backend.get()) {
                    *traffic += Traffic {
                        packets: 1,
                        bytes: bytes as u64,
                    };
                }
                self.totals.routed.get_mut(forward.route as usize)
            }
            Decision::Drop(reason) => self.totals.dropped.get_mut(*reason as usize),
        };
        if let Some(count) = count {
            *count += 1;
        }
    }

    /// Counts a [`Route::Cid`] datagram under `config_id`.
    pub(crate) fn count_codepoint(&mut self, config_id: ConfigId) {
        if let Some(count) = self
            .totals
            .by_codepoint
            .get_mut(usize::from(config_id.get()))
        {
            *count += 1;
        }
    }

    /// Folds the traffic counted against `old` into the totals, ready to count against `new`.
    pub(crate) fn change_pool(&mut self, old: &Pool, new: &Pool) {
        self.totals.fold(old, &self.traffic);
        self.traffic = vec![Traffic::default(); new.backends().len()];
    }

    pub(crate) fn snapshot(&self, pool: &Pool) -> CounterSnapshot {
        let mut snapshot = self.totals.clone();
        snapshot.fold(pool, &self.traffic);
        snapshot
    }
}
