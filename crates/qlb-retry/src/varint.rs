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

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn rfc9000_appendix_a1_examples() {
        assert_eq!(decode(&[0x25]), Some((37, 1)));
        assert_eq!(decode(&[0x7b, 0xbd]), Some((15_293, 2)));
        assert_eq!(decode(&[0x9d, 0x7f, 0x3e, 0x7d]), Some((494_878_333, 4)));
        let eight = hex::decode("c2197c5eff14e88c").expect("hex");
        assert_eq!(decode(&eight), Some((151_288_809_941_952_652, 8)));
        assert_eq!(decode(&[0x7b]), None);
        assert_eq!(decode(&[]), None);
    }
}
