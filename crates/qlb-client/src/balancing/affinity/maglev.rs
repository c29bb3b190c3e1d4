//! Maglev hashing (Eisenbud et al., NSDI 2016; Envoy's `maglev`): a lookup table of a prime
//! size in which every backend fills slots by its own permutation, in turns, so that each
//! owns an equal share and a removed backend's slots go to the others while the rest barely
//! move. A key goes to the backend of its slot; the next candidates are those of the slots
//! after it.

use std::net::SocketAddr;

use crate::balancing::affinity::key::hash;

/// Table size: a prime (required for the permutations), Envoy's default. A hundred times a
/// large fleet keeps shares within 1% of each other.
const TABLE_SIZE: usize = 65_537;

/// A Maglev table over a list of backends; entries are positions in that list.
#[derive(Clone, Debug)]
pub(crate) struct Maglev {
    table: Vec<usize>,
    backends: usize,
}

impl Maglev {
    /// The table of `backends`, each with the permutation of `hash(addr)` halves.
    pub(crate) fn new(backends: &[SocketAddr]) -> Self {
        Self::with_size(backends, TABLE_SIZE)
    }

    fn with_size(backends: &[SocketAddr], size: usize) -> Self {
        let n = backends.len();
        if n == 0 {
            return Self {
                table: Vec::new(),
                backends: 0,
            };
        }
        let size_u64 = size as u64;
        let permutations: Vec<(u64, u64)> = backends
            .iter()
            .map(|addr| {
                let name = addr.to_string();
                let offset = hash(name.as_bytes()) % size_u64;
                let skip = hash(format!("{name}/skip").as_bytes()) % (size_u64 - 1) + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0_u64; n];
        let mut table = vec![usize::MAX; size];
        let mut filled = 0;
        'fill: loop {
            for (index, &(offset, skip)) in permutations.iter().enumerate() {
                // Walk this backend's permutation to its next free slot.
                let slot = loop {
                    let slot = ((offset + next[index] * skip) % size_u64) as usize;
                    next[index] += 1;
                    if table[slot] == usize::MAX {
                        break slot;
                    }
                };
                table[slot] = index;
                filled += 1;
                if filled == size {
                    break 'fill;
                }
            }
        }
        Self { table, backends: n }
    }

    /// The backends in the order key `key` prefers them: each once, the backend of its slot
    /// first, then those of the following slots.
    pub(crate) fn preference(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = if self.table.is_empty() {
            0
        } else {
            (key % self.table.len() as u64) as usize
        };
        let mut seen = vec![false; self.backends];
        // Every backend owns slots: the walk ends once each came.
        self.table[start..]
            .iter()
            .chain(&self.table[..start])
            .filter_map(move |&index| (!std::mem::replace(&mut seen[index], true)).then_some(index))
            .take(self.backends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, 0, 2], 5000 + i)))
            .collect()
    }

    #[test]
    fn every_backend_owns_an_equal_share_and_comes_once() {
        let table = Maglev::new(&addrs(7));
        let mut counts = [0_usize; 7];
        for &index in &table.table {
            counts[index] += 1;
        }
        for count in counts {
            assert!(count.abs_diff(TABLE_SIZE / 7) <= 1, "{counts:?}");
        }
        let mut order: Vec<usize> = table.preference(hash(b"k")).collect();
        order.sort_unstable();
        assert_eq!(order, [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(Maglev::new(&[]).preference(9).count(), 0);
    }

    #[test]
    fn removing_a_backend_moves_its_keys_and_few_others() {
        let all = addrs(10);
        let before = Maglev::new(&all);
        let staying = [&all[..3], &all[4..]].concat();
        let after = Maglev::new(&staying);
        let (mut own, mut others) = (0, 0);
        for k in 0..10_000_u32 {
            let key = hash(&k.to_be_bytes());
            let old = all[before.preference(key).next().expect("a backend")];
            let new = staying[after.preference(key).next().expect("a backend")];
            if old == all[3] {
                own += 1;
            } else if new != old {
                others += 1;
            }
        }
        assert!(own > 700, "{own}");
        // Maglev trades a little disruption for even shares: a few percent at most.
        assert!(others < 300, "{others} keys of staying backends moved");
    }

    #[test]
    fn small_tables_fill_completely() {
        let table = Maglev::with_size(&addrs(3), 13);
        assert!(table.table.iter().all(|&index| index < 3));
    }
}
