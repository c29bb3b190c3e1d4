//! `gue` mode's outbox: client datagrams encapsulated over several receive batches and sent
//! together, grouped by GUE port and backend.
//!
//! A receive batch holds at most 32 buffers (single datagrams, when clients interleave). With 8 GUE ports (clients hashed over them for
//! the backends' RSS) and a few backends, interleaved clients split one batch into nearly as
//! many (port, backend) groups as it has datagrams, so almost every datagram would leave in a
//! send of its own. While a listener still has datagrams queued, the worker keeps receiving
//! into the outbox and sends when the listener is drained or the outbox is full: the groups
//! grow with what was waiting, never by waiting for more. A group keeps its datagrams in the
//! order they came (a client has one port), so no client's datagrams are reordered.

use std::net::SocketAddr;
use std::ops::Range;

use quinn_udp::EcnCodepoint;

/// The most datagrams the outbox holds before it must be sent: enough for groups of several
/// datagrams across 8 ports and a few backends, few enough that at saturation the first one
/// waits for no more than the receive calls of the rest (about half a millisecond at 430,000
/// datagrams/s; at lower rates the listeners drain, and the outbox leaves, every round).
pub(super) const OUTBOX_DATAGRAMS: usize = 256;

/// One encapsulated datagram waiting in the outbox.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct Waiting {
    /// The GUE socket it leaves through (index of its port).
    pub(super) port: usize,
    pub(super) backend: SocketAddr,
    pub(super) ecn: Option<EcnCodepoint>,
    /// Where its encapsulation lies in [`Outbox::octets`].
    pub(super) octets: Range<usize>,
}

/// Encapsulated datagrams waiting to be sent, and their octets back to back.
#[derive(Default)]
pub(super) struct Outbox {
    octets: Vec<u8>,
    waiting: Vec<Waiting>,
}

impl Outbox {
    /// Adds a datagram to `backend` through GUE socket `port`, whose encapsulation `write`
    /// appends to the octets it is given; false (and nothing added) if `write` fails.
    pub(super) fn push(
        &mut self,
        port: usize,
        backend: SocketAddr,
        ecn: Option<EcnCodepoint>,
        write: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> bool {
        let start = self.octets.len();
        if !write(&mut self.octets) {
            self.octets.truncate(start);
            return false;
        }
        self.waiting.push(Waiting {
            port,
            backend,
            ecn,
            octets: start..self.octets.len(),
        });
        true
    }

    /// How many datagrams wait.
    pub(super) fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether it holds [`OUTBOX_DATAGRAMS`] or more, and must be sent before it takes more.
    pub(super) fn is_full(&self) -> bool {
        self.waiting.len() >= OUTBOX_DATAGRAMS
    }

    /// The waiting datagrams in sending order (by port, then backend, each group in the order
    /// they came) and the octets their ranges name; [`Outbox::clear`] once they are sent.
    pub(super) fn sorted(&mut self) -> (&[Waiting], &[u8]) {
        // Stable: a group keeps its arrival order.
        self.waiting.sort_by_key(|w| (w.port, w.backend));
        (&self.waiting, &self.octets)
    }

    /// Empties it, keeping its allocations.
    pub(super) fn clear(&mut self) {
        self.octets.clear();
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(n: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, n], 6080))
    }

    #[test]
    fn groups_by_port_and_backend_and_keeps_each_groups_order() {
        let mut outbox = Outbox::default();
        // (port, backend, payload): two clients on port 1 interleaved with one on port 0.
        let pushes = [
            (1, 1, b'a'),
            (0, 2, b'b'),
            (1, 1, b'c'),
            (1, 2, b'd'),
            (0, 2, b'e'),
        ];
        for (port, to, octet) in pushes {
            assert!(outbox.push(port, backend(to), None, |out| {
                out.extend_from_slice(&[octet; 3]);
                true
            }));
        }
        assert_eq!(outbox.len(), 5);
        let (waiting, octets) = outbox.sorted();
        let order: Vec<(usize, SocketAddr, u8)> = waiting
            .iter()
            .map(|w| (w.port, w.backend, octets[w.octets.start]))
            .collect();
        assert_eq!(
            order,
            [
                (0, backend(2), b'b'),
                (0, backend(2), b'e'),
                (1, backend(1), b'a'),
                (1, backend(1), b'c'),
                (1, backend(2), b'd'),
            ]
        );
        assert!(waiting.iter().all(|w| w.octets.len() == 3));
        outbox.clear();
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn a_failed_write_leaves_nothing_and_the_outbox_fills_at_its_bound() {
        let mut outbox = Outbox::default();
        assert!(!outbox.push(0, backend(1), None, |out| {
            out.extend_from_slice(b"half");
            false
        }));
        assert_eq!(outbox.len(), 0);
        assert!(
            outbox.sorted().1.is_empty(),
            "the half-written octets are gone"
        );
        for n in 0..OUTBOX_DATAGRAMS {
            assert!(!outbox.is_full(), "{n}");
            outbox.push(0, backend(1), Some(EcnCodepoint::Ect0), |out| {
                out.push(0);
                true
            });
        }
        assert!(outbox.is_full());
    }
}
