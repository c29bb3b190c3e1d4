//! The Internet checksum (RFC 1071) of IP headers and of UDP with its pseudo-header.

use std::net::IpAddr;

/// A running ones'-complement sum, folded at the end.
#[derive(Clone, Copy, Default)]
pub(crate) struct Sum(u64);

impl Sum {
    /// Adds `octets` as big-endian 16-bit words; an odd last octet is padded with zero. Only
    /// the last slice added may have an odd length.
    pub(crate) fn add(mut self, octets: &[u8]) -> Self {
        let mut words = octets.chunks_exact(8);
        // Eight octets at a time, with the carries kept in the upper half of an u128.
        let mut wide: u128 = 0;
        for chunk in &mut words {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            wide += u128::from(u64::from_be_bytes(word));
        }
        let mut rest = words.remainder().chunks_exact(2);
        let mut narrow: u64 = 0;
        for pair in &mut rest {
            narrow += u64::from(u16::from_be_bytes([pair[0], pair[1]]));
        }
        if let [last] = rest.remainder() {
            narrow += u64::from(*last) << 8;
        }
        // 2^64 = 1 (mod 2^16 - 1): fold the carries of the wide sum back in.
        let folded = fold_u128(wide);
        self.0 = fold_u64(self.0) + fold_u64(folded) + fold_u64(narrow);
        self
    }

    /// Adds one 16-bit word.
    pub(crate) fn add_u16(mut self, word: u16) -> Self {
        self.0 += u64::from(word);
        self
    }

    /// Adds an address of the pseudo-header.
    pub(crate) fn add_ip(self, ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(ip) => self.add(&ip.octets()),
            IpAddr::V6(ip) => self.add(&ip.octets()),
        }
    }

    /// The checksum: the ones' complement of the folded sum.
    pub(crate) fn finish(self) -> u16 {
        let mut sum = fold_u64(self.0);
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        // At most 0xffff after the loop.
        !(u16::try_from(sum).unwrap_or(u16::MAX))
    }
}

fn fold_u128(value: u128) -> u64 {
    let low = u64::try_from(value & u128::from(u64::MAX)).unwrap_or(u64::MAX);
    let high = u64::try_from(value >> 64).unwrap_or(0);
    // `high` counts the wraps of 2^64, each worth 1 (mod 2^16 - 1).
    fold_u64(low) + fold_u64(high)
}

fn fold_u64(value: u64) -> u64 {
    (value & 0xffff) + ((value >> 16) & 0xffff) + ((value >> 32) & 0xffff) + (value >> 48)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 1071's byte-wise reference.
    fn reference(octets: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for pair in octets.chunks(2) {
            let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
            sum += u32::from(word);
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    #[test]
    fn rfc_1071_example() {
        // RFC 1071 section 3: the sum of these words is 0xddf2.
        let octets = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(Sum::default().add(&octets).finish(), !0xddf2);
    }

    proptest::proptest! {
        #[test]
        fn matches_the_reference(octets in proptest::collection::vec(proptest::num::u8::ANY, 0..3000)) {
            proptest::prop_assert_eq!(Sum::default().add(&octets).finish(), reference(&octets));
        }

        #[test]
        fn even_slices_add_up(a in proptest::collection::vec(proptest::num::u8::ANY, 0..100), b in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let mut a = a;
            if a.len() % 2 == 1 { a.pop(); }
            let whole = [a.clone(), b.clone()].concat();
            proptest::prop_assert_eq!(Sum::default().add(&a).add(&b).finish(), reference(&whole));
        }
    }
}
