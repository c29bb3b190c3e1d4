//! Server ID -> backend for one QUIC-LB configuration, looked up on every CID-routed packet.
//!
//! An open-addressing table at most half full with a fixed multiplicative hash: a lookup is
//! usually one probe with predictable branches, where a binary search over a few backends
//! mispredicts on every level. All IDs of a configuration have its length, so two overlapping
//! word-sized reads that cover every octet identify an ID (as short-key hashes such as wyhash
//! read keys); a loop over the octets cost more than the CID decode itself in the benchmark.
//! The hash needs no secret: the attacker picks the IDs looked up but cannot add entries, so
//! probe sequences stay as short as the operator's IDs make them.

use quic_lb::ServerId;

use crate::backend::BackendIndex;

/// A slot: the key of a server ID and its backend's index + 1, 0 marking a free slot.
type Slot = (Key, u32);

/// Two words that, for IDs of one length, identify the ID.
type Key = (u64, u64);

#[derive(Clone, Debug, Default)]
pub(crate) struct ServerIdMap {
    /// A power of two in size, at least twice the entries (or empty).
    slots: Box<[Slot]>,
    /// `64 - log2(slots.len())`: the hash's top bits index the slots.
    shift: u32,
    /// The length of every server ID in the map.
    server_id_len: usize,
}

impl ServerIdMap {
    /// A map of `entries`, whose server IDs are unique and of one length (the pool validated
    /// them).
    pub(crate) fn new(entries: &[(ServerId, BackendIndex)]) -> Self {
        let Some((first, _)) = entries.first() else {
            return Self::default();
        };
        let size = (2 * entries.len()).next_power_of_two();
        let shift = 64 - size.trailing_zeros();
        let mut slots = vec![((0, 0), 0); size];
        for (server_id, index) in entries {
            let key = key(server_id);
            // Less than half full: the walk meets a free slot.
            let mut at = home(key, shift);
            while slots[at].1 != 0 {
                at = (at + 1) % size;
            }
            // Pools hold at most 65536 backends: the index fits.
            slots[at] = (key, index.get() as u32 + 1);
        }
        Self {
            slots: slots.into(),
            shift,
            server_id_len: first.len(),
        }
    }

    #[inline]
    pub(crate) fn get(&self, server_id: &ServerId) -> Option<BackendIndex> {
        let octets: &[u8] = server_id;
        if octets.len() != self.server_id_len {
            return None;
        }
        let key = key(octets);
        let mut at = home(key, self.shift);
        // Ends at a free slot, which every non-empty map has; an empty map ends at once.
        loop {
            let &(held, index_plus_one) = self.slots.get(at)?;
            if index_plus_one == 0 {
                return None;
            }
            if held == key {
                return Some(BackendIndex::new(index_plus_one as usize - 1));
            }
            at = (at + 1) % self.slots.len();
        }
    }
}

/// Two overlapping reads covering all of `octets` (1 to 16 of them): for a given length the
/// pair determines the octets.
fn key(octets: &[u8]) -> Key {
    if let (Some(head), Some(tail)) = (octets.first_chunk::<8>(), octets.last_chunk::<8>()) {
        return (u64::from_le_bytes(*head), u64::from_le_bytes(*tail));
    }
    if let (Some(head), Some(tail)) = (octets.first_chunk::<4>(), octets.last_chunk::<4>()) {
        let word = |chunk: &[u8; 4]| u64::from(u32::from_le_bytes(*chunk));
        return (word(head), word(tail));
    }
    // 1 to 3 octets: the first, the middle and the last cover them all.
    let octet = |at: usize| octets.get(at).copied().map_or(0, u64::from);
    let len = octets.len();
    (
        octet(0) | octet(len / 2) << 8 | octet(len.saturating_sub(1)) << 16,
        0,
    )
}

/// The first slot to try for `key`, with `shift` as in [`ServerIdMap`]: the key folded to 64
/// bits and multiplied by 2^64 / phi (Fibonacci hashing), which spreads sequential IDs evenly
/// over the top bits.
fn home((head, tail): Key, shift: u32) -> usize {
    let folded = head ^ tail.rotate_left(32);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn server_id(n: u32, len: usize) -> ServerId {
        let octets = n.to_be_bytes();
        let mut padded = [0u8; 15];
        let tail = len.min(4);
        padded[len - tail..len].copy_from_slice(&octets[4 - tail..]);
        ServerId::new(&padded[..len]).expect("1..=15 octets")
    }

    #[test]
    fn keys_of_one_length_tell_every_octet_apart() {
        // Every length, every position: changing one octet changes the key.
        for len in 1..=15 {
            let base = ServerId::new(&[0x5a; 15][..len]).expect("valid");
            for at in 0..len {
                let mut octets = [0x5a; 15];
                octets[at] = 0xa5;
                let changed = ServerId::new(&octets[..len]).expect("valid");
                assert_ne!(key(&base), key(&changed), "length {len}, octet {at}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn keys_of_one_length_are_distinct(
            (a, b) in (1usize..=15).prop_flat_map(|len| {
                let octets = proptest::collection::vec(0u8..4, len);
                (octets.clone(), octets)
            })
        ) {
            proptest::prop_assert_eq!(a == b, key(&a) == key(&b));
        }
    }

    #[test]
    fn finds_every_entry_and_nothing_else() {
        for len in [1, 2, 4, 15] {
            let count: u32 = if len == 1 { 200 } else { 1000 };
            let entries: Vec<_> = (0..count)
                .map(|n| (server_id(n, len), BackendIndex::new(n as usize)))
                .collect();
            let map = ServerIdMap::new(&entries);
            for (server_id, index) in &entries {
                assert_eq!(map.get(server_id), Some(*index));
            }
            if len > 1 {
                assert_eq!(map.get(&server_id(count, len)), None);
            }
            // Another length never matches.
            assert_eq!(map.get(&server_id(1, if len == 1 { 2 } else { 1 })), None);
        }
    }

    #[test]
    fn empty_map_finds_nothing() {
        let map = ServerIdMap::new(&[]);
        assert_eq!(map.get(&server_id(0, 2)), None);
    }

    #[test]
    fn one_entry_map_finds_it() {
        let map = ServerIdMap::new(&[(server_id(7, 3), BackendIndex::new(4))]);
        assert_eq!(map.get(&server_id(7, 3)), Some(BackendIndex::new(4)));
        for n in 0..100 {
            if n != 7 {
                assert_eq!(map.get(&server_id(n, 3)), None);
            }
        }
    }
}
