//! Ring hash (Karger et al.; Envoy's and gRPC's `ring_hash`): every backend owns many points
//! on a 64-bit ring, a key goes to the owner of the first point at or after its hash, and
//! the next candidates are the owners of the points after that. Removing a backend moves
//! only the keys that landed on its points.

use std::net::SocketAddr;

use crate::balancing::affinity::key::hash;

/// Points per backend: the same however many backends there are, so that a smaller fleet's
/// ring is the larger one's minus the removed backends' points (and no other key moves).
/// Shares are then within about 10% of even.
const POINTS_PER_BACKEND: usize = 256;

/// A ring over a list of backends; indices are positions in that list.
#[derive(Clone, Debug)]
pub(crate) struct Ring {
    /// (point, backend index), sorted by point.
    points: Vec<(u64, usize)>,
    backends: usize,
}

impl Ring {
    /// The ring of `backends`: backend `addr` owns the points `hash("addr#i")`.
    pub(crate) fn new(backends: &[SocketAddr]) -> Self {
        let mut points: Vec<(u64, usize)> = backends
            .iter()
            .enumerate()
            .flat_map(|(index, addr)| {
                (0..POINTS_PER_BACKEND)
                    .map(move |i| (hash(format!("{addr}#{i}").as_bytes()), index))
            })
            .collect();
        points.sort_unstable();
        Self {
            points,
            backends: backends.len(),
        }
    }

    /// The backends in the order key `key` prefers them: each once, the owner of the first
    /// point clockwise first.
    pub(crate) fn preference(&self, key: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|&(point, _)| point < key);
        let mut seen = vec![false; self.backends];
        self.points[start..]
            .iter()
            .chain(&self.points[..start])
            .filter_map(move |&(_, index)| {
                (!std::mem::replace(&mut seen[index], true)).then_some(index)
            })
            .take(self.backends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, 0, 1], 4000 + i)))
            .collect()
    }

    #[test]
    fn every_backend_comes_once_in_the_preference() {
        let ring = Ring::new(&addrs(5));
        let mut order: Vec<usize> = ring.preference(hash(b"k")).collect();
        assert_eq!(order.len(), 5);
        order.sort_unstable();
        assert_eq!(order, [0, 1, 2, 3, 4]);
        assert_eq!(Ring::new(&[]).preference(1).count(), 0);
    }

    #[test]
    fn removing_a_backend_moves_only_its_keys_and_shares_are_even() {
        let all = addrs(10);
        let before = Ring::new(&all);
        let staying = [&all[..3], &all[4..]].concat();
        let after = Ring::new(&staying);
        let mut counts = [0_usize; 10];
        for k in 0..10_000_u32 {
            let key = hash(&k.to_be_bytes());
            let old = before.preference(key).next().expect("a backend");
            counts[old] += 1;
            let new = staying[after.preference(key).next().expect("a backend")];
            if old != 3 {
                assert_eq!(new, all[old], "key {k} moved");
            } else {
                // Its keys go where the ring's next backend was.
                let second = before.preference(key).nth(1).expect("a second");
                assert_eq!(new, all[second]);
            }
        }
        for count in counts {
            assert!((700..=1300).contains(&count), "{counts:?}");
        }
    }
}
