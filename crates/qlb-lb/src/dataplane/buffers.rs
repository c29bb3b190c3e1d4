//! The worker's receive buffers, where each datagram of a batch lies in them, and where the
//! octets of a transmit come from.
//!
//! Invariants, checked by `debug_assert!` in debug builds and tests: a receive fills at most
//! [`BATCH_SIZE`] buffers with at most [`BUFFER_SIZE`] octets each, and every span handed out
//! lies inside its buffer's received octets. In release builds a broken invariant yields an
//! empty datagram (the router drops and counts it) rather than a panic on network input.

use std::io::{self, IoSliceMut};
use std::ops::Range;

use mio::net::UdpSocket;
use quinn_udp::{BATCH_SIZE, RecvMeta, UdpSocketState};

/// One receive buffer: the largest UDP payload, and the largest GRO batch (64 KiB).
const BUFFER_SIZE: usize = 1 << 16;

/// Where a datagram of the batch lies: its buffer, and its octets in the buffer.
pub(super) struct DatagramSpan {
    pub(super) buffer: usize,
    pub(super) octets: Range<usize>,
}

/// The worker's receive buffers: a batch of [`BUFFER_SIZE`] buffers and their metadata.
pub(super) struct Buffers {
    storage: Box<[u8]>,
    metas: [RecvMeta; BATCH_SIZE],
}

impl Buffers {
    pub(super) fn new() -> Self {
        Self {
            storage: vec![0; BATCH_SIZE * BUFFER_SIZE].into_boxed_slice(),
            metas: [RecvMeta::default(); BATCH_SIZE],
        }
    }

    /// Receives one batch from `socket`; returns how many buffers were filled.
    #[inline]
    pub(super) fn recv(&mut self, socket: &UdpSocket, state: &UdpSocketState) -> io::Result<usize> {
        let mut buffers = self.storage.chunks_mut(BUFFER_SIZE);
        let mut slices: [IoSliceMut<'_>; BATCH_SIZE] = std::array::from_fn(|_| {
            IoSliceMut::new(
                buffers
                    .next()
                    .unwrap_or_else(|| broken("the storage holds BATCH_SIZE buffers")),
            )
        });
        let count = state.recv(socket.into(), &mut slices, &mut self.metas)?;
        debug_assert!(
            count <= BATCH_SIZE,
            "{count} buffers filled of {BATCH_SIZE}"
        );
        debug_assert!(
            self.metas.iter().take(count).all(|m| m.len <= BUFFER_SIZE),
            "a buffer filled beyond its size"
        );
        Ok(count)
    }
}

/// The buffers filled by the last receive.
#[derive(Clone, Copy)]
pub(super) struct Batch<'a> {
    buffers: &'a Buffers,
    count: usize,
}

impl<'a> Batch<'a> {
    /// The first `count` buffers of `buffers`, as the receive that filled them said.
    pub(super) fn new(buffers: &'a Buffers, count: usize) -> Self {
        debug_assert!(count <= BATCH_SIZE, "{count} buffers of {BATCH_SIZE}");
        Self { buffers, count }
    }

    /// Each buffer received, with its metadata.
    #[inline]
    pub(super) fn iter(self) -> impl Iterator<Item = (&'a RecvMeta, &'a [u8])> {
        self.buffers
            .storage
            .chunks(BUFFER_SIZE)
            .zip(&self.buffers.metas)
            .take(self.count)
            .map(|(buffer, meta)| {
                let received = buffer
                    .get(..meta.len)
                    .unwrap_or_else(|| broken("a buffer's length is within it"));
                (meta, received)
            })
    }

    /// The metadata of buffer `buffer`, if this batch filled it.
    #[inline]
    pub(super) fn meta(self, buffer: usize) -> Option<&'a RecvMeta> {
        self.buffers
            .metas
            .get(buffer)
            .filter(|_| buffer < self.count)
    }

    /// The octets of `span`.
    #[inline]
    pub(super) fn octets(self, span: &DatagramSpan) -> &'a [u8] {
        self.range(span.buffer, span.octets.start..span.octets.end)
    }

    /// Octets `range` of buffer `buffer`, which must lie in what it received.
    #[inline]
    pub(super) fn range(self, buffer: usize, range: Range<usize>) -> &'a [u8] {
        debug_assert!(
            self.meta(buffer).is_some_and(|m| range.end <= m.len),
            "octets {range:?} of buffer {buffer} lie beyond what the batch received"
        );
        let start = buffer * BUFFER_SIZE;
        self.buffers
            .storage
            .get(start + range.start..start + range.end)
            .unwrap_or_else(|| broken("a span lies in the storage"))
    }
}

/// Where the octets of a transmit come from: the receive batch (spans name its buffers), or
/// a scratch buffer that spans name as buffer 0 (`gue` mode's encapsulated datagrams).
#[derive(Clone, Copy)]
pub(super) enum Octets<'a> {
    Batch(Batch<'a>),
    Scratch(&'a [u8]),
}

impl<'a> Octets<'a> {
    /// The octets of `span`.
    #[inline]
    pub(super) fn span(self, span: &DatagramSpan) -> &'a [u8] {
        self.range(span.buffer, span.octets.start..span.octets.end)
    }

    /// Octets `range` of buffer `buffer`.
    #[inline]
    pub(super) fn range(self, buffer: usize, range: Range<usize>) -> &'a [u8] {
        match self {
            Self::Batch(batch) => batch.range(buffer, range),
            Self::Scratch(octets) => {
                debug_assert_eq!(buffer, 0, "a scratch buffer is buffer 0");
                octets
                    .get(range)
                    .unwrap_or_else(|| broken("a span lies in the scratch buffer"))
            }
        }
    }
}

/// Whether `spans` lie back to back in one buffer, so that a transmit of them takes their
/// octets as they lie: the datagrams of one GRO buffer as received, or encapsulated ones in
/// the scratch buffer; not decapsulated payloads, which have headers between them.
#[inline]
pub(super) fn back_to_back(spans: &[DatagramSpan]) -> bool {
    spans
        .windows(2)
        .all(|pair| pair[0].buffer == pair[1].buffer && pair[0].octets.end == pair[1].octets.start)
}

/// The fallback of a broken buffer invariant, `T`'s default (an empty slice: a datagram the
/// router drops and counts); in debug builds and tests, a panic that names the invariant, so
/// that a bug cannot pass for a counted drop.
#[cold]
#[track_caller]
pub(super) fn broken<T: Default>(invariant: &str) -> T {
    debug_assert!(false, "buffer invariant broken: {invariant}");
    T::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "buffer invariant broken: a test's")]
    fn a_broken_invariant_panics_in_debug_builds() {
        broken::<()>("a test's");
    }

    #[test]
    fn the_octets_of_a_span_are_those_received() {
        let mut buffers = Buffers::new();
        buffers.storage[BUFFER_SIZE..BUFFER_SIZE + 4].copy_from_slice(b"abcd");
        buffers.metas[1].len = 4;
        let batch = Batch::new(&buffers, 2);
        let span = DatagramSpan {
            buffer: 1,
            octets: 1..3,
        };
        assert_eq!(batch.octets(&span), b"bc");
        assert_eq!(
            batch.iter().nth(1).map(|(_, data)| data),
            Some(&b"abcd"[..])
        );
        assert!(batch.meta(2).is_none(), "not filled by this batch");
        assert_eq!(Octets::Batch(batch).span(&span), b"bc");
        assert_eq!(Octets::Scratch(b"xyz").range(0, 1..3), b"yz");
    }

    #[test]
    fn only_spans_that_touch_in_one_buffer_are_back_to_back() {
        let span = |buffer, octets| DatagramSpan { buffer, octets };
        assert!(back_to_back(&[]));
        assert!(back_to_back(&[span(3, 5..9)]));
        assert!(back_to_back(&[
            span(0, 0..4),
            span(0, 4..8),
            span(0, 8..10)
        ]));
        assert!(!back_to_back(&[span(0, 0..4), span(1, 4..8)]));
        assert!(!back_to_back(&[span(0, 40..44), span(0, 84..88)]));
    }
}
