//! Datagrams in receive buffers and transmits, without I/O.
//!
//! A receive buffer holds one datagram, or with GRO several from one sender: all `stride`
//! octets long but the last, which may be shorter. They are routed one by one. Consecutive
//! datagrams of a receive batch bound for one place leave as one transmit, with GSO when
//! there are several (the segment size is the first one's length): those of one GRO buffer as
//! they lie, and single datagrams of several buffers (received without GRO) gathered into one.
//! A transmit of several takes the shape GSO requires (every datagram as long as the first
//! but the last, which may be shorter), so every datagram keeps its boundaries and octets: a
//! sendmsg per datagram costs about as much as the whole rest of forwarding it.

use std::ops::Range;

/// The largest UDP payload over IPv4 (65535 - 20 - 8): the most one transmit may carry.
pub(crate) const MAX_TRANSMIT_OCTETS: usize = 65_507;

/// The octet ranges of the datagrams of a `len`-octet buffer received with GRO `stride`. An
/// empty buffer is one empty datagram (so that the router counts it); a zero stride means
/// one datagram.
pub(crate) fn datagrams(len: usize, stride: usize) -> impl Iterator<Item = Range<usize>> {
    let stride = if stride == 0 { len } else { stride }.max(1);
    (0..len.div_ceil(stride).max(1)).map(move |i| i * stride..len.min((i + 1) * stride))
}

/// Transmits for a sequence of datagrams, given each one's target (`None`: dropped, leaves in
/// none) and length: maximal runs of consecutive datagrams with equal targets in which every
/// datagram but the last is as long as the first, the last no longer, and all together at
/// most `max_octets` long. An empty datagram leaves alone (GSO has no zero segment size).
pub(crate) fn transmits<T: Copy + PartialEq>(
    datagrams: &[(Option<T>, usize)],
    max_octets: usize,
) -> impl Iterator<Item = (T, Range<usize>)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let rest = datagrams.get(start..)?;
        let first = start + rest.iter().position(|(target, _)| target.is_some())?;
        let (target, segment) = match datagrams.get(first) {
            Some(&(Some(target), segment)) => (target, segment),
            _ => return None,
        };
        let (mut end, mut octets, mut last) = (first + 1, segment, segment);
        while let Some(&(next, len)) = datagrams.get(end) {
            let fits = octets + len <= max_octets;
            if next != Some(target) || segment == 0 || last != segment || len > segment || !fits {
                break;
            }
            (end, octets, last) = (end + 1, octets + len, len);
        }
        start = end;
        Some((target, first..end))
    })
}

/// `range` cut into pieces of at most `max` (at least 1) datagrams: one transmit each, for a
/// socket that takes at most `max` segments per GSO send.
pub(crate) fn chunks(range: Range<usize>, max: usize) -> impl Iterator<Item = Range<usize>> {
    let max = max.max(1);
    let end = range.end;
    range
        .step_by(max)
        .map(move |start| start..end.min(start + max))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The datagrams' (start, end) octets.
    fn ranges(len: usize, stride: usize) -> Vec<(usize, usize)> {
        datagrams(len, stride).map(|r| (r.start, r.end)).collect()
    }

    #[test]
    fn a_gro_buffer_splits_at_the_stride_with_a_short_last_datagram() {
        assert_eq!(ranges(10, 4), [(0, 4), (4, 8), (8, 10)]);
        assert_eq!(ranges(8, 4), [(0, 4), (4, 8)]);
    }

    #[test]
    fn single_empty_and_strideless_buffers_are_one_datagram() {
        assert_eq!(ranges(3, 3), [(0, 3)]);
        assert_eq!(ranges(3, 0), [(0, 3)]);
        assert_eq!(ranges(3, 1200), [(0, 3)]);
        assert_eq!(ranges(0, 0), [(0, 0)]);
        assert_eq!(ranges(0, 1200), [(0, 0)]);
    }

    fn all(datagrams: &[(Option<char>, usize)], max_octets: usize) -> Vec<(char, Range<usize>)> {
        transmits(datagrams, max_octets).collect()
    }

    #[test]
    fn equal_neighbours_leave_together_and_drops_split_them() {
        let datagrams = [
            (Some('a'), 10),
            (Some('a'), 10),
            (None, 10),
            (Some('a'), 10),
            (Some('b'), 10),
            (Some('b'), 4),
            (None, 10),
        ];
        assert_eq!(
            all(&datagrams, MAX_TRANSMIT_OCTETS),
            [('a', 0..2), ('a', 3..4), ('b', 4..6)]
        );
        assert_eq!(all(&[(None, 1), (None, 1)], 100), []);
        assert_eq!(all(&[], 100), []);
    }

    #[test]
    fn a_transmit_takes_the_gso_shape() {
        let a = |len| (Some('a'), len);
        // A shorter datagram ends a transmit; a longer one starts the next.
        assert_eq!(
            all(&[a(10), a(10), a(7), a(10), a(12), a(12)], 100),
            [('a', 0..3), ('a', 3..4), ('a', 4..6)]
        );
        // Empty datagrams leave alone.
        assert_eq!(
            all(&[a(0), a(0), a(5), a(0)], 100),
            [('a', 0..1), ('a', 1..2), ('a', 2..4)]
        );
        // The octet limit.
        assert_eq!(
            all(&[a(10), a(10), a(10), a(10), a(10)], 25),
            [('a', 0..2), ('a', 2..4), ('a', 4..5)]
        );
        // A datagram longer than the limit still leaves, alone.
        assert_eq!(all(&[a(30), a(30)], 25), [('a', 0..1), ('a', 1..2)]);
    }

    #[test]
    fn chunks_respect_the_segment_limit() {
        assert_eq!(chunks(2..9, 3).collect::<Vec<_>>(), [2..5, 5..8, 8..9]);
        assert_eq!(chunks(0..2, 0).collect::<Vec<_>>(), [0..1, 1..2]);
        assert_eq!(chunks(4..4, 8).count(), 0);
    }

    proptest::proptest! {
        /// Whatever the network hands over (any lengths, any strides, any routing outcome),
        /// nothing panics, every routed datagram leaves exactly once, in order, to its
        /// target, and every transmit has the shape and size GSO takes.
        #[test]
        fn every_routed_datagram_leaves_once_in_a_gso_shaped_transmit(
            buffers in proptest::collection::vec((0usize..3000, 0usize..1500), 0..8),
            routed in proptest::collection::vec(proptest::option::of(0u8..3), 0..200),
            max_octets in 1usize..5000,
            max_segments in 0usize..70,
        ) {
            let lengths: Vec<usize> = buffers
                .iter()
                .flat_map(|&(len, stride)| datagrams(len, stride).map(|r| r.len()))
                .collect();
            let datagrams: Vec<(Option<u8>, usize)> = lengths
                .iter()
                .enumerate()
                .map(|(i, &len)| (routed.get(i).copied().flatten(), len))
                .collect();
            let mut sent = Vec::new();
            for (target, run) in transmits(&datagrams, max_octets) {
                let group = &datagrams[run.clone()];
                let segment = group[0].1;
                proptest::prop_assert!(group.iter().all(|(t, _)| *t == Some(target)));
                proptest::prop_assert!(group.iter().all(|(_, len)| *len <= segment));
                proptest::prop_assert!(group[..group.len() - 1].iter().all(|(_, len)| *len == segment));
                let octets: usize = group.iter().map(|(_, len)| len).sum();
                proptest::prop_assert!(group.len() == 1 || (octets <= max_octets && segment > 0));
                for piece in chunks(run, max_segments) {
                    proptest::prop_assert!(piece.len() <= max_segments.max(1));
                    sent.extend(piece);
                }
            }
            let expected: Vec<usize> =
                (0..datagrams.len()).filter(|&i| datagrams[i].0.is_some()).collect();
            proptest::prop_assert_eq!(sent, expected);
        }
    }
}
