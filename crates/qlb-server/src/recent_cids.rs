//! The connection IDs this process issued most recently, so that a late packet for one of them
//! is dropped rather than answered with a stateless reset.
//!
//! quinn forgets a CID the moment the peer retires it. A packet the peer sent with that CID
//! just before (on the path it is leaving, through a slower hop such as the load balancer)
//! can arrive after the RETIRE_CONNECTION_ID frame, and quinn answers it with a stateless
//! reset. RFC 9000 section 10.3.1 forbids a client to act on the reset token of a CID it
//! retired, but some do (ngtcp2 0.12, as Debian 12 ships it: seen closing a 20 MB download
//! after it moved to the server's preferred address), and the connection dies. A reset exists
//! for state that was lost; for a CID this process issued, nothing was lost, so such packets
//! are dropped instead. A restarted or different server has not issued it and still resets.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};

/// How many issued CIDs are remembered: about 1.2 MB at most, the CIDs of some 10,000
/// connections' worth of handshakes and migrations. Older ones are forgotten (and their late
/// packets reset, as quinn alone would), so a handshake flood cannot grow the set.
pub(crate) const RECENT_CIDS: usize = 65_536;

/// A bounded, first-in first-out set of CIDs, stored as keyed 64-bit hashes (the key is
/// random per process, so nobody can aim collisions at it).
#[derive(Debug)]
pub(crate) struct RecentCids {
    capacity: usize,
    hasher: RandomState,
    order: VecDeque<u64>,
    members: HashSet<u64>,
}

impl RecentCids {
    /// An empty set holding at most `capacity` CIDs.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hasher: RandomState::new(),
            order: VecDeque::new(),
            members: HashSet::new(),
        }
    }

    /// Remembers `cid`, forgetting the oldest one when full.
    pub(crate) fn insert(&mut self, cid: &[u8]) {
        if self.capacity == 0 {
            return;
        }
        let hash = self.hasher.hash_one(cid);
        if !self.members.insert(hash) {
            return;
        }
        if self.order.len() == self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.members.remove(&oldest);
            }
        }
        self.order.push_back(hash);
    }

    /// Whether `cid` is among the remembered ones.
    pub(crate) fn contains(&self, cid: &[u8]) -> bool {
        self.members.contains(&self.hasher.hash_one(cid))
    }

    /// How many CIDs are remembered.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_what_was_inserted_and_nothing_else() {
        let mut recent = RecentCids::new(8);
        recent.insert(b"first cid");
        recent.insert(b"second cid");
        assert!(recent.contains(b"first cid"));
        assert!(recent.contains(b"second cid"));
        assert!(!recent.contains(b"never issued"));
        assert!(!recent.contains(b""));
    }

    #[test]
    fn forgets_the_oldest_when_full_and_never_grows_past_its_capacity() {
        let mut recent = RecentCids::new(3);
        for cid in [b"a", b"b", b"c", b"d", b"e"] {
            recent.insert(cid);
        }
        assert_eq!(recent.len(), 3);
        assert!(!recent.contains(b"a") && !recent.contains(b"b"));
        assert!(recent.contains(b"c") && recent.contains(b"d") && recent.contains(b"e"));
    }

    #[test]
    fn a_repeated_cid_takes_one_place() {
        let mut recent = RecentCids::new(2);
        recent.insert(b"same");
        recent.insert(b"same");
        recent.insert(b"other");
        assert_eq!(recent.len(), 2);
        assert!(recent.contains(b"same") && recent.contains(b"other"));
    }

    #[test]
    fn zero_capacity_remembers_nothing() {
        let mut recent = RecentCids::new(0);
        recent.insert(b"cid");
        assert!(!recent.contains(b"cid"));
    }
}
