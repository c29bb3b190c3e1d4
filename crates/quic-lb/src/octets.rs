//! A fixed-capacity octet string: the storage behind [`ServerId`](crate::ServerId) and
//! [`ConnectionId`](crate::ConnectionId), so neither ever touches the heap.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Equality, ordering and hashing look at the first `len` octets only: the storage past them
/// may hold anything (the decoder fills it with fixed-size copies).
#[derive(Clone, Copy)]
pub(crate) struct Octets<const N: usize> {
    len: u8,
    bytes: [u8; N],
}

impl<const N: usize> Octets<N> {
    /// Copies `src`; `None` when it does not fit.
    pub(crate) fn copy_from(src: &[u8]) -> Option<Self> {
        if src.len() > N {
            return None;
        }
        let mut bytes = [0u8; N];
        bytes[..src.len()].copy_from_slice(src);
        Some(Self {
            len: src.len() as u8,
            bytes,
        })
    }

    /// Parses hex: `None` inner means not hex (odd length or a bad digit), an `Err` the
    /// number of octets that did not fit.
    pub(crate) fn from_hex(s: &str) -> Result<Option<Self>, usize> {
        if !s.len().is_multiple_of(2) {
            return Ok(None);
        }
        let len = s.len() / 2;
        if len > N {
            return Err(len);
        }
        let mut bytes = [0u8; N];
        Ok(hex::decode_to_slice(s, &mut bytes[..len])
            .ok()
            .map(|()| Self::from_parts(bytes, len)))
    }

    /// The first `len` octets of `bytes` (all of them if `len` is larger).
    pub(crate) fn from_parts(bytes: [u8; N], len: usize) -> Self {
        Self {
            len: len.min(N) as u8,
            bytes,
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub(crate) fn fmt_hex(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.as_slice()
            .iter()
            .try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl<const N: usize> PartialEq for Octets<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl<const N: usize> Eq for Octets<N> {}

impl<const N: usize> Hash for Octets<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl<const N: usize> PartialOrd for Octets<N> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize> Ord for Octets<N> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_from_refuses_oversize_input() {
        assert!(Octets::<2>::copy_from(&[1, 2, 3]).is_none());
        assert_eq!(
            Octets::<4>::copy_from(&[1, 2]).expect("fits").as_slice(),
            &[1, 2]
        );
    }

    #[test]
    fn storage_past_the_length_is_ignored() {
        let a = Octets::<4>::from_parts([1, 2, 3, 4], 2);
        let b = Octets::<4>::from_parts([1, 2, 9, 9], 2);
        assert!(a == b);
        assert_eq!(a.cmp(&b), Ordering::Equal);
        let hash = |o: &Octets<4>| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            o.hash(&mut h);
            h.finish()
        };
        assert_eq!(hash(&a), hash(&b));
        assert!(a != Octets::<4>::from_parts([1, 2, 3, 4], 3));
    }
}
