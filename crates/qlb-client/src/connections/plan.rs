//! The pool's decisions, pure: how many connections to open, which to drain and why, which
//! connection serves a request, when a connection expires, how long to back off after failed
//! connection attempts. The pool only carries them out.
//!
//! The rule that matters: a connection past its max lifetime keeps taking requests until its
//! replacement is ready, and only then drains (finishes what it carries, takes nothing new).

use std::time::{Duration, Instant};

use crate::stats::snapshot::CloseReason;

/// The pool settings the plan depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Connections kept open even when idle.
    pub(crate) min_connections: usize,
    /// Connections that carried no request for this long are drained (beyond the minimum).
    /// None: never.
    pub(crate) idle_timeout: Option<Duration>,
    /// Connections that reached the server of another one are replaced
    /// ([`distinct`](crate::connections::distinct)), one more redial every this long once
    /// the budget is spent. None: they are kept.
    pub(crate) distinct: Option<Duration>,
}

/// One connection that takes requests (draining ones are out of the plan), as seen now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Conn {
    pub(crate) id: u64,
    /// False while the handshake runs.
    pub(crate) ready: bool,
    /// When its max lifetime is up (jitter included); None: never.
    pub(crate) expires_at: Option<Instant>,
    pub(crate) in_flight: usize,
}

impl Conn {
    fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }
}

/// What asks for connections besides the minimum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Demand {
    /// Requests waiting for a connection.
    pub(crate) waiting: usize,
    /// When a request last started or ended here; None if never.
    pub(crate) last_used: Option<Instant>,
    /// The last connection attempt failed: keep trying one (after the back-off) so that the
    /// backend is found again when it comes back.
    pub(crate) failing: bool,
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[must_use = "a plan does nothing until the pool carries it out"]
pub(crate) struct Plan {
    /// Connections to open.
    pub(crate) open: usize,
    /// Connections to drain, and why.
    pub(crate) drain: Vec<(u64, CloseReason)>,
    /// Of the drained ones, those retired while needed (a new connection took over).
    pub(crate) replaced: usize,
}

/// Whether the backend has been used recently enough to keep a connection for it.
fn busy(conns: &[Conn], limits: &Limits, demand: &Demand, now: Instant) -> bool {
    demand.waiting > 0
        || conns.iter().any(|conn| conn.in_flight > 0)
        || demand.last_used.is_some_and(|used| {
            limits
                .idle_timeout
                .is_none_or(|idle| now.saturating_duration_since(used) < idle)
        })
}

/// How many connections taking requests the backend needs now.
#[must_use]
pub(crate) fn wanted(conns: &[Conn], limits: &Limits, demand: &Demand, now: Instant) -> usize {
    limits
        .min_connections
        .max(usize::from(busy(conns, limits, demand, now)))
        .max(usize::from(demand.failing))
}

/// The plan for `conns` at `now`.
pub(crate) fn plan(conns: &[Conn], limits: &Limits, demand: &Demand, now: Instant) -> Plan {
    let busy = busy(conns, limits, demand, now);
    let wanted = wanted(conns, limits, demand, now);
    let connecting = conns.iter().filter(|conn| !conn.ready).count();
    let (expired, fresh): (Vec<&Conn>, Vec<&Conn>) = conns
        .iter()
        .filter(|conn| conn.ready)
        .partition(|conn| conn.expired(now));

    let mut plan = Plan {
        open: wanted.saturating_sub(fresh.len() + connecting),
        ..Plan::default()
    };
    // Expired connections drain once enough fresh ones stand in for them.
    if fresh.len() >= wanted {
        for conn in &expired {
            plan.drain.push((conn.id, CloseReason::MaxLifetime));
        }
        if wanted > 0 {
            plan.replaced = expired.len();
        }
    }
    // Idle surplus: once nobody used the backend for the idle timeout, keep only the minimum.
    if !busy {
        let surplus = fresh.len().saturating_sub(wanted);
        let mut idle: Vec<&&Conn> = fresh.iter().filter(|conn| conn.in_flight == 0).collect();
        idle.sort_by_key(|conn| conn.id);
        for conn in idle.into_iter().take(surplus) {
            plan.drain.push((conn.id, CloseReason::Idle));
        }
    }
    plan
}

/// The connection that serves the next request: the least busy one that has not expired,
/// else the least busy expired one (it keeps serving until its replacement is ready).
#[must_use]
pub(crate) fn choose(conns: &[Conn], now: Instant) -> Option<u64> {
    conns
        .iter()
        .filter(|conn| conn.ready)
        .min_by_key(|conn| (conn.expired(now), conn.in_flight))
        .map(|conn| conn.id)
}

/// `lifetime` scaled by a factor in [0.9, 1.1), from `unit` in [0, 1): +-10% jitter, so that
/// connections opened together do not all expire together.
pub(crate) fn jittered(lifetime: Duration, unit: f64) -> Duration {
    lifetime.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
}

/// The first retry after a failed connection attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(250);
/// The longest wait between connection attempts to a failing backend.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How long to wait before the next connection attempt after `failures` in a row (>= 1):
/// doubling from 250 ms up to 10 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    BACKOFF_BASE.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn ready(id: u64, expires_at: Option<Instant>, in_flight: usize) -> Conn {
        Conn {
            id,
            ready: true,
            expires_at,
            in_flight,
        }
    }

    fn connecting(id: u64) -> Conn {
        Conn {
            id,
            ready: false,
            expires_at: None,
            in_flight: 0,
        }
    }

    fn limits(min_connections: usize, idle_timeout: Option<Duration>) -> Limits {
        Limits {
            min_connections,
            idle_timeout,
            distinct: None,
        }
    }

    fn used(at: Instant) -> Demand {
        Demand {
            last_used: Some(at),
            ..Demand::default()
        }
    }

    #[test]
    fn nothing_opens_without_demand_or_minimum() {
        let now = Instant::now();
        assert_eq!(
            plan(&[], &limits(0, None), &Demand::default(), now),
            Plan::default()
        );
    }

    #[test]
    fn the_minimum_opens_ahead_of_requests() {
        let now = Instant::now();
        let planned = plan(&[connecting(1)], &limits(3, None), &Demand::default(), now);
        assert_eq!(planned.open, 2);
    }

    #[test]
    fn a_waiting_request_opens_one_connection_once() {
        let now = Instant::now();
        let waiting = Demand {
            waiting: 5,
            ..Demand::default()
        };
        assert_eq!(plan(&[], &limits(0, None), &waiting, now).open, 1);
        assert_eq!(
            plan(&[connecting(1)], &limits(0, None), &waiting, now).open,
            0
        );
    }

    #[test]
    fn an_expired_connection_serves_until_its_replacement_is_ready_then_drains() {
        let start = Instant::now();
        let now = start + 10 * SEC;
        let old = ready(1, Some(start + 5 * SEC), 2);
        let limits = limits(1, None);
        let demand = used(now);

        // Expired: a replacement opens, the old one keeps serving.
        let step1 = plan(&[old], &limits, &demand, now);
        assert_eq!((step1.open, step1.drain.as_slice()), (1, &[][..]));
        assert_eq!(choose(&[old], now), Some(1));

        // The replacement is connecting: nothing more to do, the old one still serves.
        let step2 = plan(&[old, connecting(2)], &limits, &demand, now);
        assert_eq!(step2, Plan::default());
        assert_eq!(choose(&[old, connecting(2)], now), Some(1));

        // The replacement is ready: it takes the requests, the old one drains.
        let new = ready(2, Some(now + 5 * SEC), 0);
        let step3 = plan(&[old, new], &limits, &demand, now);
        assert_eq!(step3.open, 0);
        assert_eq!(step3.drain, [(1, CloseReason::MaxLifetime)]);
        assert_eq!(step3.replaced, 1);
        assert_eq!(choose(&[old, new], now), Some(2));
    }

    #[test]
    fn an_unneeded_expired_connection_drains_without_replacement() {
        let start = Instant::now();
        let now = start + 100 * SEC;
        let old = ready(1, Some(start + SEC), 0);
        let planned = plan(&[old], &limits(0, Some(10 * SEC)), &used(start), now);
        assert_eq!(planned.open, 0);
        assert_eq!(planned.drain, [(1, CloseReason::MaxLifetime)]);
        assert_eq!(planned.replaced, 0);
    }

    #[test]
    fn idle_connections_beyond_the_minimum_drain_after_the_idle_timeout() {
        let start = Instant::now();
        let limits = limits(1, Some(30 * SEC));
        let conns = [ready(1, None, 0), ready(2, None, 0), ready(3, None, 0)];
        // Used 10 s ago: still busy, keep them all.
        let recent = plan(&conns, &limits, &used(start), start + 10 * SEC);
        assert_eq!(recent, Plan::default());
        // Idle for 31 s: keep the minimum (the newest), drain the others.
        let idle = plan(&conns, &limits, &used(start), start + 31 * SEC);
        assert_eq!(idle.drain, [(1, CloseReason::Idle), (2, CloseReason::Idle)]);
        // Without an idle timeout, a used backend keeps its connection.
        let kept = plan(
            &conns[..1],
            &Limits::default(),
            &used(start),
            start + 1000 * SEC,
        );
        assert_eq!(kept, Plan::default());
    }

    #[test]
    fn a_failing_backend_keeps_one_attempt_going() {
        let now = Instant::now();
        let failing = Demand {
            failing: true,
            ..Demand::default()
        };
        assert_eq!(plan(&[], &limits(0, None), &failing, now).open, 1);
    }

    #[test]
    fn requests_go_to_the_least_busy_live_connection() {
        let now = Instant::now();
        let conns = [
            ready(1, None, 4),
            ready(2, None, 1),
            connecting(3),
            ready(4, Some(now - SEC), 0), // expired: only when nothing else
        ];
        assert_eq!(choose(&conns, now), Some(2));
        assert_eq!(choose(&conns[2..], now), Some(4));
        assert_eq!(choose(&conns[2..3], now), None);
    }

    #[test]
    fn lifetimes_jitter_by_ten_percent() {
        let lifetime = 100 * SEC;
        assert_eq!(jittered(lifetime, 0.0), 90 * SEC);
        assert_eq!(jittered(lifetime, 0.5), 100 * SEC);
        assert!(jittered(lifetime, 0.999_999) < 110 * SEC);
        assert_eq!(jittered(lifetime, 7.0), 110 * SEC);
    }

    #[test]
    fn backoff_doubles_up_to_a_ceiling() {
        let waits: Vec<_> = (1..=8).map(backoff).collect();
        assert_eq!(
            waits,
            [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000].map(Duration::from_millis)
        );
        assert_eq!(backoff(u32::MAX), Duration::from_secs(10));
    }
}
