//! The nonce counter of an [`Encoder`](crate::Encoder): starts at a random value, counts
//! through its whole space once, and then reports exhaustion instead of wrapping (draft
//! section 9.6: a nonce is never reused under one key).

/// A counter over `bits` bits (1..=128) that visits every value once, from `start`.
#[derive(Clone, Debug)]
pub(crate) struct NonceCounter {
    next: u128,
    start: u128,
    mask: u128,
    issued: u128,
    exhausted: bool,
}

impl NonceCounter {
    pub(crate) fn new(bits: u32, start: u128) -> Self {
        let mask = if bits >= 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        Self {
            next: start & mask,
            start: start & mask,
            mask,
            issued: 0,
            exhausted: false,
        }
    }

    /// The next unused value, or `None` once every value has been handed out.
    pub(crate) fn next(&mut self) -> Option<u128> {
        if self.exhausted {
            return None;
        }
        let value = self.next;
        self.next = value.wrapping_add(1) & self.mask;
        self.issued += 1;
        self.exhausted = self.next == self.start;
        Some(value)
    }

    /// Values not yet handed out, saturating at `u128::MAX` (a fresh 128-bit space).
    pub(crate) fn remaining(&self) -> u128 {
        if self.exhausted {
            0
        } else {
            (self.mask - self.issued).saturating_add(1)
        }
    }

    pub(crate) fn is_exhausted(&self) -> bool {
        self.exhausted
    }

    /// Writes `value` big-endian into the last octets of `out` (at most 16); the leading
    /// octets of a longer `out` are left as they are.
    pub(crate) fn write(value: u128, out: &mut [u8]) {
        let be = value.to_be_bytes();
        let n = out.len().min(be.len());
        let at = out.len() - n;
        out[at..].copy_from_slice(&be[be.len() - n..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn visits_every_value_once_then_stops() {
        for start in [0u128, 1, 2047, 4095, 9999] {
            let mut counter = NonceCounter::new(12, start);
            let mut seen = HashSet::new();
            while let Some(v) = counter.next() {
                assert!(v <= 0xfff);
                assert!(seen.insert(v), "repeated {v}");
                assert_eq!(counter.remaining(), 4096 - seen.len() as u128);
            }
            assert_eq!(seen.len(), 4096);
            assert!(counter.is_exhausted());
            assert_eq!(counter.remaining(), 0);
            assert_eq!(counter.next(), None);
        }
    }

    #[test]
    fn full_width_counter_does_not_overflow() {
        let mut counter = NonceCounter::new(128, u128::MAX);
        assert_eq!(counter.next(), Some(u128::MAX));
        assert_eq!(counter.next(), Some(0));
        assert_eq!(counter.remaining(), u128::MAX - 1);
    }

    #[test]
    fn writes_big_endian_into_the_tail() {
        let mut out = [0xaa; 18];
        NonceCounter::write(0x0102, &mut out);
        assert_eq!(&out[..2], &[0xaa, 0xaa]);
        assert_eq!(&out[16..], &[0x01, 0x02]);
        let mut short = [0u8; 4];
        NonceCounter::write(0x1122_3344_5566, &mut short);
        assert_eq!(short, [0x33, 0x44, 0x55, 0x66]);
    }
}
