//! The send side's octets: encapsulating each datagram of a transmit (GSO: several of one
//! size, the last maybe shorter), and cutting a run of datagrams into the batches one
//! `sendmsg` may carry.

use std::net::SocketAddr;
use std::ops::Range;

use qlb_gue::{Ecn, EncapError};

/// The most octets of datagrams one GSO send carries: a UDP datagram's limit less the IPv6
/// and UDP headers, since the kernel builds the whole run as one.
const MAX_GSO_OCTETS: usize = 65_535 - 40 - 8;

/// Appends to `out` each datagram of `contents` (`segment_size` apart, the last may be
/// shorter) encapsulated from `source` to `destination`. Returns the encapsulated stride:
/// the encapsulated datagrams are that far apart, the last maybe shorter, as GSO wants.
pub(crate) fn encapsulate_segments(
    out: &mut Vec<u8>,
    source: SocketAddr,
    destination: SocketAddr,
    ecn: Ecn,
    contents: &[u8],
    segment_size: usize,
) -> Result<usize, EncapError> {
    let segment_size = segment_size.clamp(1, contents.len().max(1));
    for datagram in contents.chunks(segment_size) {
        qlb_gue::encapsulate(out, source, destination, ecn, datagram)?;
    }
    Ok(segment_size + qlb_gue::overhead(source))
}

/// The ranges of `len` octets of datagrams `stride` apart that one send each may carry: at
/// most `max_segments` datagrams and [`MAX_GSO_OCTETS`] octets.
pub(crate) fn gso_batches(
    len: usize,
    stride: usize,
    max_segments: usize,
) -> impl Iterator<Item = Range<usize>> {
    let stride = stride.clamp(1, len.max(1));
    let per_batch = max_segments.min(MAX_GSO_OCTETS / stride).max(1) * stride;
    (0..len)
        .step_by(per_batch)
        .map(move |start| start..(start + per_batch).min(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    #[test]
    fn each_segment_is_encapsulated_and_the_stride_grows_by_the_overhead() {
        let vip = addr("198.51.100.1:443");
        let client = addr("192.0.2.7:5000");
        let contents: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
        let mut out = Vec::new();
        let stride =
            encapsulate_segments(&mut out, vip, client, Ecn::Ect0, &contents, 100).expect("fits");
        assert_eq!(stride, 132);
        assert_eq!(out.len(), 3 * 32 + 250);
        for (i, datagram) in out.chunks(stride).enumerate() {
            let inner = qlb_gue::decapsulate(datagram).expect("decapsulates");
            assert_eq!((inner.source, inner.destination), (vip, client));
            assert_eq!(inner.ecn, Ecn::Ect0);
            let start = i * 100;
            assert_eq!(inner.payload, &contents[start..(start + 100).min(250)]);
        }
        // A single datagram: its own length is the stride.
        out.clear();
        let stride =
            encapsulate_segments(&mut out, vip, client, Ecn::NotEct, b"one", 1200).expect("fits");
        assert_eq!(stride, out.len());
    }

    #[test]
    fn mixed_families_are_refused() {
        let mut out = Vec::new();
        let refused = encapsulate_segments(
            &mut out,
            addr("198.51.100.1:443"),
            addr("[2001:db8::7]:5000"),
            Ecn::NotEct,
            b"x",
            1,
        );
        assert_eq!(refused, Err(EncapError::MixedFamilies));
    }

    #[test]
    fn batches_respect_the_segment_count_and_the_octet_limit() {
        let batches = |len, stride, max| gso_batches(len, stride, max).collect::<Vec<_>>();
        assert_eq!(batches(350, 100, 64), vec![Range { start: 0, end: 350 }]);
        assert_eq!(batches(350, 100, 2), [0..200, 200..350]);
        assert_eq!(batches(350, 100, 1), [0..100, 100..200, 200..300, 300..350]);
        // 64 datagrams of 1,500 octets exceed what one send may carry: 43 per batch.
        let big = batches(64 * 1500, 1500, 64);
        assert_eq!(big, [0..43 * 1500, 43 * 1500..64 * 1500]);
        assert_eq!(batches(0, 100, 64), Vec::<Range<usize>>::new());
        assert_eq!(batches(10, 0, 64), vec![Range { start: 0, end: 10 }]);
    }
}
