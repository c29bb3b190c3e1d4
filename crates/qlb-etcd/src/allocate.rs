//! Which server IDs a new member tries, in which order. The choice itself is etcd's: each
//! candidate is taken with a create-if-absent transaction, so two members racing for one ID
//! cannot both get it; what was read as taken only spares hopeless tries.

use std::collections::HashSet;

use quic_lb::ServerId;
use rand::seq::SliceRandom;

/// Server ID spaces up to this size are listed whole (shuffled); larger ones are sampled.
const LISTED: usize = 1 << 16;

/// Up to `count` distinct server IDs of `len` octets (1 to 4 listed, longer sampled) that are
/// not in `taken` (lowercase hex), in random order, so members starting together seldom
/// collide. The all-zero ID is never offered (it reads as "unset" in logs and tables).
pub(crate) fn candidates(len: usize, taken: &HashSet<String>, count: usize) -> Vec<ServerId> {
    let mut rng = rand::rng();
    let space = 1usize.checked_shl(u32::try_from(len * 8).unwrap_or(u32::MAX));
    let free = |id: &ServerId| !taken.contains(&id.to_string()) && id.iter().any(|&b| b != 0);
    match space {
        Some(space) if space <= LISTED => {
            let mut all: Vec<ServerId> = (1..space)
                .filter_map(|n| ServerId::new(&n.to_be_bytes()[size_of::<usize>() - len..]).ok())
                .filter(free)
                .collect();
            all.shuffle(&mut rng);
            all.truncate(count);
            all
        }
        _ => {
            let mut seen = HashSet::new();
            let mut out = Vec::new();
            // Bounded: the space is larger than 65,536, so free IDs are everywhere but in
            // fleets of absurd size, where the attempts run out and the caller says so.
            for _ in 0..count.saturating_mul(4) {
                let octets: Vec<u8> = (0..len).map(|_| rand::random::<u8>()).collect();
                if let Ok(id) = ServerId::new(&octets) {
                    if free(&id) && seen.insert(id.to_string()) {
                        out.push(id);
                        if out.len() == count {
                            break;
                        }
                    }
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_spaces_offer_every_free_id_once() {
        let taken: HashSet<String> = ["01", "02", "ff"].iter().map(|s| s.to_string()).collect();
        let offered = candidates(1, &taken, 1000);
        assert_eq!(offered.len(), 255 - 3);
        let unique: HashSet<String> = offered.iter().map(ToString::to_string).collect();
        assert_eq!(unique.len(), offered.len());
        assert!(unique.is_disjoint(&taken) && !unique.contains("00"));
    }

    #[test]
    fn a_full_space_offers_nothing() {
        let taken: HashSet<String> = (1..=255u8).map(|b| format!("{b:02x}")).collect();
        assert!(candidates(1, &taken, 10).is_empty());
    }

    #[test]
    fn large_spaces_are_sampled_to_the_count_asked() {
        let offered = candidates(6, &HashSet::new(), 16);
        assert_eq!(offered.len(), 16);
        assert!(offered.iter().all(|id| id.len() == 6));
        let two = candidates(2, &HashSet::new(), 5);
        assert!(two.len() == 5 && two.iter().all(|id| id.len() == 2));
    }
}
