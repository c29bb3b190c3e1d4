//! Datagrams in receive buffers and transmits, without I/O.
//!
//! A receive buffer holds one datagram, or with GRO several from one sender: all `stride`
//! octets long but the last, which may be shorter. They are routed one by one; consecutive
//! datagrams of one buffer bound for one place leave as one transmit, with GSO when there are
//! several (`segment_size = stride`), so nothing is copied and every datagram keeps its
//! boundaries and octets.

use std::ops::Range;

/// The datagrams of a buffer received with GRO `stride`. An empty buffer is one empty
/// datagram (so that the router counts it); a zero stride means one datagram.
pub(crate) fn datagrams(buffer: &[u8], stride: usize) -> impl Iterator<Item = &[u8]> {
    buffer
        .chunks(effective_stride(buffer, stride))
        .chain(buffer.is_empty().then_some(buffer))
}

/// How many datagrams [`datagrams`] yields.
pub(crate) fn datagram_count(buffer: &[u8], stride: usize) -> usize {
    buffer
        .len()
        .div_ceil(effective_stride(buffer, stride))
        .max(1)
}

fn effective_stride(buffer: &[u8], stride: usize) -> usize {
    if stride == 0 { buffer.len() } else { stride }.max(1)
}

/// Runs of equal consecutive targets: `(target, datagram indices)`; `None` (a dropped
/// datagram) ends a run and starts none.
pub(crate) fn runs<T: Copy + PartialEq>(
    targets: &[Option<T>],
) -> impl Iterator<Item = (T, Range<usize>)> + '_ {
    let mut start = 0;
    std::iter::from_fn(move || {
        let first = start + targets.get(start..)?.iter().position(Option::is_some)?;
        let target = targets.get(first).copied().flatten()?;
        let len = targets
            .get(first..)?
            .iter()
            .take_while(|t| **t == Some(target))
            .count();
        start = first + len;
        Some((target, first..start))
    })
}

/// `range` cut into pieces of at most `max` (at least 1) datagrams: one transmit each.
pub(crate) fn chunks(range: Range<usize>, max: usize) -> impl Iterator<Item = Range<usize>> {
    let max = max.max(1);
    let end = range.end;
    range
        .step_by(max)
        .map(move |start| start..end.min(start + max))
}

/// The octets of datagrams `range` of a buffer with `stride`, and the GSO segment size to
/// send them with (`None` for a single datagram). Out-of-range indices yield nothing.
pub(crate) fn span(buffer: &[u8], stride: usize, range: Range<usize>) -> (&[u8], Option<usize>) {
    let stride = effective_stride(buffer, stride);
    let start = range.start.saturating_mul(stride).min(buffer.len());
    let end = range.end.saturating_mul(stride).min(buffer.len());
    let octets = buffer.get(start..end).unwrap_or_default();
    let segment_size = (range.len() > 1).then_some(stride);
    (octets, segment_size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gro_buffer_splits_at_the_stride_with_a_short_last_datagram() {
        let buffer: Vec<u8> = (0..10).collect();
        let parts: Vec<&[u8]> = datagrams(&buffer, 4).collect();
        assert_eq!(parts, [&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
        assert_eq!(datagram_count(&buffer, 4), 3);
    }

    #[test]
    fn single_empty_and_strideless_buffers_are_one_datagram() {
        assert_eq!(datagrams(&[1, 2, 3], 3).count(), 1);
        assert_eq!(datagrams(&[1, 2, 3], 0).collect::<Vec<_>>(), [&[1, 2, 3]]);
        assert_eq!(datagrams(&[], 0).collect::<Vec<_>>(), [&[] as &[u8]]);
        assert_eq!(datagrams(&[], 1200).count(), 1);
        assert_eq!(datagram_count(&[], 0), 1);
        assert_eq!(datagram_count(&[1, 2, 3], 0), 1);
    }

    #[test]
    fn runs_group_equal_neighbours_and_skip_drops() {
        let targets = [
            Some('a'),
            Some('a'),
            None,
            Some('a'),
            Some('b'),
            Some('b'),
            None,
        ];
        let found: Vec<(char, Range<usize>)> = runs(&targets).collect();
        assert_eq!(found, [('a', 0..2), ('a', 3..4), ('b', 4..6)]);
        assert_eq!(runs::<char>(&[None, None]).count(), 0);
        assert_eq!(runs::<char>(&[]).count(), 0);
    }

    #[test]
    fn chunks_respect_the_segment_limit() {
        assert_eq!(chunks(2..9, 3).collect::<Vec<_>>(), [2..5, 5..8, 8..9]);
        assert_eq!(chunks(0..2, 0).collect::<Vec<_>>(), [0..1, 1..2]);
        assert_eq!(chunks(4..4, 8).count(), 0);
    }

    #[test]
    fn spans_are_contiguous_octets_with_a_segment_size_for_several() {
        let buffer: Vec<u8> = (0..10).collect();
        assert_eq!(span(&buffer, 4, 0..2), (&buffer[0..8], Some(4)));
        assert_eq!(span(&buffer, 4, 1..3), (&buffer[4..10], Some(4)));
        assert_eq!(span(&buffer, 4, 2..3), (&buffer[8..10], None));
        assert_eq!(span(&buffer, 4, 5..9), (&[][..], Some(4)));
        assert_eq!(span(&buffer, 0, 0..1), (&buffer[..], None));
    }

    proptest::proptest! {
        /// Whatever the network hands over (any length, any stride, any routing outcome),
        /// the split never panics, and the transmits carry exactly the routed datagrams.
        #[test]
        fn any_buffer_splits_and_reassembles(
            buffer in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
            stride in 0usize..1500,
            routed in proptest::collection::vec(proptest::option::of(0u8..3), 0..80),
            max in 0usize..70,
        ) {
            let parts: Vec<&[u8]> = datagrams(&buffer, stride).collect();
            proptest::prop_assert_eq!(parts.len(), datagram_count(&buffer, stride));
            proptest::prop_assert_eq!(parts.concat(), buffer.clone());
            let targets: Vec<Option<u8>> =
                (0..parts.len()).map(|i| routed.get(i).copied().flatten()).collect();
            let mut sent = Vec::new();
            for (target, run) in runs(&targets) {
                for piece in chunks(run, max) {
                    proptest::prop_assert!(piece.len() <= max.max(1));
                    let (octets, segment_size) = span(&buffer, stride, piece.clone());
                    proptest::prop_assert_eq!(segment_size.is_some(), piece.len() > 1);
                    sent.push((target, octets.to_vec()));
                }
            }
            let expected: Vec<u8> = parts
                .iter()
                .zip(&targets)
                .filter(|(_, t)| t.is_some())
                .flat_map(|(p, _)| p.iter().copied())
                .collect();
            let sent_octets: Vec<u8> = sent.iter().flat_map(|(_, o)| o.iter().copied()).collect();
            proptest::prop_assert_eq!(sent_octets, expected);
        }
    }

    #[test]
    fn spans_of_runs_reassemble_the_buffer() {
        let buffer: Vec<u8> = (0..=255).cycle().take(1000).collect();
        let stride = 96;
        let targets: Vec<Option<u8>> = (0..datagram_count(&buffer, stride))
            .map(|i| Some(u8::from(i % 3 == 0)))
            .collect();
        let mut joined = Vec::new();
        for (_, run) in runs(&targets) {
            for piece in chunks(run, 2) {
                joined.extend_from_slice(span(&buffer, stride, piece).0);
            }
        }
        assert_eq!(joined, buffer);
    }
}
