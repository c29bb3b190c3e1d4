//! QUIC variable-length integers (RFC 9000 section 16).

/// The value and the octets it took, or `None` if `buf` ends inside it.
pub(crate) fn decode(buf: &[u8]) -> Option<(u64, usize)> {
    let first = *buf.first()?;
    let len = 1usize << (first >> 6);
    let octets = buf.get(..len)?;
    let value = octets[1..]
        .iter()
        .fold(u64::from(first & 0x3f), |acc, &b| (acc << 8) | u64::from(b));
    Some((value, len))
}

/// Appends `value` in the shortest encoding, or in at least `min_octets` (1, 2, 4 or 8).
pub(crate) fn encode(out: &mut Vec<u8>, value: u64, min_octets: usize) {
    let (octets, tag) = match value {
        v if v < 1 << 6 && min_octets <= 1 => (1, 0x00),
        v if v < 1 << 14 && min_octets <= 2 => (2, 0x40),
        v if v < 1 << 30 && min_octets <= 4 => (4, 0x80),
        _ => (8, 0xc0),
    };
    let be = value.to_be_bytes();
    let start = out.len();
    out.extend_from_slice(&be[8 - octets..]);
    out[start] |= tag;
}

#[cfg(test)]
mod tests {
    use super::{decode, encode};

    #[test]
    fn rfc9000_appendix_a1_examples() {
        assert_eq!(decode(&[0x25]), Some((37, 1)));
        assert_eq!(decode(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(decode(&[0x9d, 0x7f, 0x3e, 0x7d]), Some((494_878_333, 4)));
        let eight = hex::decode("c2197c5eff14e88c").expect("hex");
        assert_eq!(decode(&eight), Some((151_288_809_941_952_652, 8)));
        assert_eq!(decode(&[0x7b]), None);
        let mut out = Vec::new();
        encode(&mut out, 37, 1);
        encode(&mut out, 37, 2);
        encode(&mut out, 15_293, 1);
        encode(&mut out, 494_878_333, 1);
        assert_eq!(hex::encode(out), "2540257bbd9d7f3e7d");
        assert_eq!(decode(&[]), None);
    }
}
