//! The hashing structure of the current fleet, rebuilt only when it changes: building a
//! Maglev table costs a few milliseconds, a lookup nanoseconds.

use std::net::SocketAddr;

use crate::balancing::affinity::maglev::Maglev;
use crate::balancing::affinity::ring::Ring;

/// Which consistent hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    Ring,
    Maglev,
}

#[derive(Debug)]
enum Built {
    Ring(Ring),
    Maglev(Maglev),
}

/// A ring or table over a list of backends, with the list it was built for.
#[derive(Debug)]
pub(crate) struct Table {
    addrs: Vec<SocketAddr>,
    built: Built,
}

impl Table {
    /// The structure of `scheme` over `addrs`.
    pub(crate) fn new(scheme: Scheme, addrs: &[SocketAddr]) -> Self {
        Self {
            addrs: addrs.to_vec(),
            built: match scheme {
                Scheme::Ring => Built::Ring(Ring::new(addrs)),
                Scheme::Maglev => Built::Maglev(Maglev::new(addrs)),
            },
        }
    }

    /// Whether it was built for exactly `addrs`.
    pub(crate) fn is_for(&self, addrs: &[SocketAddr]) -> bool {
        self.addrs == addrs
    }

    /// The backends (indices into the list it was built for) in the order `key` prefers.
    pub(crate) fn preference(&self, key: u64) -> Box<dyn Iterator<Item = usize> + '_> {
        match &self.built {
            Built::Ring(ring) => Box::new(ring.preference(key)),
            Built::Maglev(maglev) => Box::new(maglev.preference(key)),
        }
    }
}
