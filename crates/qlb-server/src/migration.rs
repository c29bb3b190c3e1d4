//! Noticing that a client's address changed: connection migration or NAT rebinding. quinn
//! follows the new path by itself; the server only counts what it sees.

use std::net::SocketAddr;

/// The last client address seen on one connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PeerAddress {
    current: SocketAddr,
}

impl PeerAddress {
    pub(crate) fn new(initial: SocketAddr) -> Self {
        Self { current: initial }
    }

    /// Records the address seen now; returns whether it differs from the last one.
    pub(crate) fn observe(&mut self, seen: SocketAddr) -> bool {
        let changed = seen != self.current;
        self.current = seen;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_change_once() {
        let a: SocketAddr = "192.0.2.1:1000".parse().expect("addr");
        let b: SocketAddr = "192.0.2.1:1001".parse().expect("addr");
        let mut peer = PeerAddress::new(a);
        assert!(!peer.observe(a));
        assert!(peer.observe(b));
        assert!(!peer.observe(b));
        assert!(peer.observe(a));
    }
}
