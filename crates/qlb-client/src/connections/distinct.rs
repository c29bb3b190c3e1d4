//! Distinct backends behind one address (httplb's open issue #59): when every connection to
//! a load balancer's VIP may land on any backend, `min_connections` connections are not
//! that many backends. Once connections say which server they reached, duplicates are
//! retired (and replaced by the plan) within a budget of redials that refills slowly, so
//! that a fleet smaller than the pool costs one handshake per refill, and a fleet that grows
//! is found. Pure: identities and `now` in, connections to retire out.

use std::time::{Duration, Instant};

/// Redials a pool may make at once, per connection it keeps: collecting N distinct
/// backends of N by random placement takes about N ln N dials.
const REDIALS_PER_CONNECTION: u32 = 8;
/// One redial comes back this often by default.
pub(crate) const DEFAULT_REFILL: Duration = Duration::from_secs(5);

/// The connections (by id) that duplicate the server of an older one: every one but the
/// lowest id of each server. Unidentified connections duplicate nothing.
#[must_use]
pub(crate) fn duplicates(conns: &[(u64, Option<&str>)]) -> Vec<u64> {
    let mut sorted: Vec<(u64, &str)> = conns
        .iter()
        .filter_map(|&(id, server)| server.map(|server| (id, server)))
        .collect();
    sorted.sort_unstable();
    let mut seen = std::collections::HashSet::new();
    sorted
        .into_iter()
        .filter(|&(_, server)| !seen.insert(server))
        .map(|(id, _)| id)
        .collect()
}

/// The redial budget of one pool.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Redials {
    used: u32,
    refilled_at: Option<Instant>,
}

impl Redials {
    /// Takes one redial for a pool of `connections` at `now`, if the budget has one; one
    /// comes back every `refill`.
    pub(crate) fn take(&mut self, connections: usize, now: Instant, refill: Duration) -> bool {
        let refilled = *self.refilled_at.get_or_insert(now);
        let elapsed = now.saturating_duration_since(refilled).as_nanos();
        let refills = u32::try_from(elapsed / refill.as_nanos().max(1)).unwrap_or(u32::MAX);
        if refills > 0 {
            self.used = self.used.saturating_sub(refills);
            // Whole refills only: the rest of the interval carries over.
            self.refilled_at = Some(refilled + refill.saturating_mul(refills));
        }
        let budget =
            REDIALS_PER_CONNECTION.saturating_mul(u32::try_from(connections).unwrap_or(u32::MAX));
        if self.used < budget {
            self.used += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_connection_of_each_server_stays() {
        let conns = [
            (7, Some("b")),
            (3, Some("a")),
            (5, Some("a")),
            (4, None),
            (9, Some("a")),
            (8, Some("b")),
            (1, None),
        ];
        assert_eq!(duplicates(&conns), [5, 8, 9]);
        assert!(duplicates(&[(1, None), (2, None)]).is_empty());
    }

    #[test]
    fn the_budget_runs_out_and_refills_slowly() {
        let start = Instant::now();
        let refill = DEFAULT_REFILL;
        let mut redials = Redials::default();
        let taken = (0..20).filter(|_| redials.take(2, start, refill)).count();
        assert_eq!(taken, 16);
        let at = |secs| start + Duration::from_secs(secs);
        assert!(!redials.take(2, at(4), refill));
        assert!(redials.take(2, at(5), refill));
        assert!(!redials.take(2, at(6), refill));
        // Two refills later, two more.
        let later = at(15);
        assert!(redials.take(2, later, refill) && redials.take(2, later, refill));
        assert!(!redials.take(2, later, refill));
    }
}
