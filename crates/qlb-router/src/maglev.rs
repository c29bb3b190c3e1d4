//! Weighted Maglev consistent hashing (Eisenbud et al., NSDI 2016), with the weighting of
//! Envoy's Maglev load balancer.
//!
//! Each backend walks its own permutation of the table's slots, derived from a fixed-key hash
//! of its name, and the backends take turns claiming their next free slot; a heavier backend
//! takes turns more often. The table depends only on the set of (name, weight) pairs, so every
//! load balancer instance with the same backends builds the same table, and removing one of N
//! backends moves about 1/N of the keys.

use crate::backend::BackendIndex;
use crate::hash::{Domain, stable_hash};

/// A backend as Maglev sees it.
pub(crate) struct Member<'a> {
    pub(crate) name: &'a str,
    pub(crate) weight: u32,
    pub(crate) index: BackendIndex,
}

/// The lookup table: slot -> backend.
#[derive(Clone)]
pub(crate) struct Maglev {
    slots: Box<[BackendIndex]>,
}

impl std::fmt::Debug for Maglev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maglev")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

/// A member's walk through its permutation, and its turn-taking state.
struct Walk {
    index: BackendIndex,
    position: usize,
    skip: usize,
    weight: u64,
    /// The member takes a turn in round `r` once `r * weight` has reached this.
    next_turn: u64,
}

impl Maglev {
    /// Builds a table of `size` slots, which must be a prime above 1 (the caller checks), over
    /// `members` in the order given; that order must not depend on how the caller got them.
    pub(crate) fn build(members: &[Member<'_>], size: usize) -> Self {
        let Some(max_weight) = members.iter().map(|m| u64::from(m.weight)).max() else {
            return Self {
                slots: Box::new([]),
            };
        };
        let mut walks: Vec<Walk> = members
            .iter()
            .map(|member| Walk {
                index: member.index,
                position: slot_of(
                    stable_hash(Domain::MaglevOffset, member.name.as_bytes()),
                    size,
                ),
                // A step in 1..size visits every slot, as size is prime.
                skip: slot_of(
                    stable_hash(Domain::MaglevSkip, member.name.as_bytes()),
                    size - 1,
                ) + 1,
                weight: u64::from(member.weight),
                next_turn: 0,
            })
            .collect();
        let mut slots: Vec<Option<BackendIndex>> = vec![None; size];
        let mut filled = 0;
        let mut round: u64 = 1;
        while filled < size {
            for walk in walks.iter_mut() {
                if filled == size {
                    break;
                }
                // A member of weight w takes about w / max_weight turns per round.
                if round * walk.weight < walk.next_turn {
                    continue;
                }
                walk.next_turn += max_weight;
                // A free slot exists (filled < size) and the walk visits every slot.
                while slots[walk.position].is_some() {
                    walk.position = (walk.position + walk.skip) % size;
                }
                slots[walk.position] = Some(walk.index);
                filled += 1;
            }
            round += 1;
        }
        Self {
            slots: slots.into_iter().flatten().collect(),
        }
    }

    /// The backend for a key with this fixed-key hash; `None` when the table has no members.
    /// The slots, in order: what [`Maglev::lookup`] indexes.
    pub(crate) fn slots(&self) -> &[BackendIndex] {
        &self.slots
    }

    pub(crate) fn lookup(&self, key_hash: u64) -> Option<BackendIndex> {
        // Multiply-shift maps the hash onto the slots without a division.
        let slot = ((u128::from(key_hash) * self.slots.len() as u128) >> 64) as usize;
        self.slots.get(slot).copied()
    }
}

/// `hash mod size`, for building permutations.
fn slot_of(hash: u64, size: usize) -> usize {
    (hash % size as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: usize = 65537;

    fn names(count: usize) -> Vec<String> {
        (0..count).map(|i| format!("backend-{i}")).collect()
    }

    fn table(names: &[String], weight: impl Fn(usize) -> u32) -> Maglev {
        let members: Vec<Member<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| Member {
                name,
                weight: weight(i),
                index: BackendIndex::new(i),
            })
            .collect();
        Maglev::build(&members, SIZE)
    }

    /// The share of slots each backend index holds.
    fn shares(maglev: &Maglev, count: usize) -> Vec<f64> {
        let mut counts = vec![0usize; count];
        for index in maglev.slots.iter() {
            counts[index.get()] += 1;
        }
        counts.iter().map(|&c| c as f64 / SIZE as f64).collect()
    }

    /// Backend names for keys 0..n (hashed as the router hashes DCIDs).
    fn owners<'a>(maglev: &Maglev, names: &'a [String], keys: u32) -> Vec<&'a str> {
        (0..keys)
            .map(|key| {
                let hash = stable_hash(Domain::Key, &key.to_be_bytes());
                let index = maglev.lookup(hash).expect("members");
                names[index.get()].as_str()
            })
            .collect()
    }

    #[test]
    fn every_slot_is_filled_and_equal_weights_share_evenly() {
        let maglev = table(&names(10), |_| 1);
        assert_eq!(maglev.slots.len(), SIZE);
        for share in shares(&maglev, 10) {
            assert!((0.095..0.105).contains(&share), "{share}");
        }
    }

    #[test]
    fn shares_follow_weights() {
        let maglev = table(&names(3), |i| [1, 2, 5][i]);
        let shares = shares(&maglev, 3);
        for (share, expected) in shares.iter().zip([0.125, 0.25, 0.625]) {
            assert!((share - expected).abs() < 0.01, "{shares:?}");
        }
    }

    #[test]
    fn huge_weights_do_not_overflow_or_starve() {
        let maglev = table(&names(2), |i| [u32::MAX, u32::MAX / 2][i]);
        let shares = shares(&maglev, 2);
        assert!((shares[1] - 1.0 / 3.0).abs() < 0.01, "{shares:?}");
    }

    #[test]
    fn removing_one_of_ten_moves_about_a_tenth_of_the_keys() {
        let all = names(10);
        let before = table(&all, |_| 1);
        let remaining: Vec<String> = all[..9].to_vec();
        let after = table(&remaining, |_| 1);
        let keys = 100_000;
        let (old, new) = (
            owners(&before, &all, keys),
            owners(&after, &remaining, keys),
        );
        let moved = old.iter().zip(&new).filter(|(a, b)| a != b).count();
        let moved_share = moved as f64 / f64::from(keys);
        assert!((0.08..=0.16).contains(&moved_share), "{moved_share}");
        // Keys of the backends that stayed mostly stay where they were.
        let kept: Vec<_> = old
            .iter()
            .zip(&new)
            .filter(|(a, _)| **a != "backend-9")
            .collect();
        let stayed = kept.iter().filter(|(a, b)| a == b).count();
        let stayed_share = stayed as f64 / kept.len() as f64;
        assert!(stayed_share > 0.97, "{stayed_share}");
    }

    #[test]
    fn adding_one_to_nine_moves_about_a_tenth_of_the_keys() {
        let all = names(10);
        let before = table(&all[..9], |_| 1);
        let after = table(&all, |_| 1);
        let keys = 100_000;
        let (old, new) = (owners(&before, &all, keys), owners(&after, &all, keys));
        let moved = old.iter().zip(&new).filter(|(a, b)| a != b).count();
        let moved_share = moved as f64 / f64::from(keys);
        assert!((0.08..=0.16).contains(&moved_share), "{moved_share}");
        let to_new = old
            .iter()
            .zip(&new)
            .filter(|(a, b)| a != b && **b == "backend-9");
        assert!(to_new.count() as f64 / moved as f64 > 0.8);
    }

    #[test]
    fn empty_table_has_no_backend() {
        let maglev = Maglev::build(&[], SIZE);
        assert_eq!(maglev.lookup(0), None);
        assert_eq!(maglev.lookup(u64::MAX), None);
    }

    #[test]
    fn lookup_covers_the_first_and_last_slot() {
        let maglev = table(&names(2), |_| 1);
        assert_eq!(maglev.lookup(0), Some(maglev.slots[0]));
        assert_eq!(maglev.lookup(u64::MAX), Some(maglev.slots[SIZE - 1]));
    }
}
