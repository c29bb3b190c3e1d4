//! Rendezvous (highest random weight) subsetting: each client keeps the K backends that score
//! highest for its client ID. Stable: a client keeps its subset while the set does not change,
//! and a backend joining or leaving moves at most one member of a subset. Spread: over many
//! client IDs every backend is in about the same number of subsets.

use std::net::{IpAddr, SocketAddr};

/// The at most `k` addresses of `addrs` that score highest for `client_id`, in the order of
/// `addrs`. Pure and deterministic across processes and Rust versions (its own hash).
pub(crate) fn subset(addrs: &[SocketAddr], client_id: u64, k: usize) -> Vec<SocketAddr> {
    if addrs.len() <= k {
        return addrs.to_vec();
    }
    let mut scored: Vec<(u64, usize)> = addrs
        .iter()
        .enumerate()
        .map(|(index, addr)| (score(client_id, addr), index))
        .collect();
    // Highest score first; the address breaks (astronomically unlikely) ties.
    scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then_with(|| addrs[a.1].cmp(&addrs[b.1])));
    let mut chosen: Vec<usize> = scored[..k].iter().map(|&(_, index)| index).collect();
    chosen.sort_unstable();
    chosen.into_iter().map(|index| addrs[index]).collect()
}

/// The weight of `addr` for `client_id`: FNV-1a over both, then a splitmix64 finaliser so
/// that nearby inputs (ports in a row) score independently.
fn score(client_id: u64, addr: &SocketAddr) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &byte in bytes {
            hash = (hash ^ u64::from(byte)).wrapping_mul(FNV_PRIME);
        }
    };
    feed(&client_id.to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => feed(&ip.octets()),
        IpAddr::V6(ip) => feed(&ip.octets()),
    }
    feed(&addr.port().to_be_bytes());
    splitmix64(hash)
}

fn splitmix64(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(n: u16) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, (i / 250) as u8, (i % 250) as u8], 443)))
            .collect()
    }

    #[test]
    fn small_sets_are_kept_whole() {
        let addrs = backends(3);
        assert_eq!(subset(&addrs, 1, 3), addrs);
        assert_eq!(subset(&addrs, 1, 10), addrs);
    }

    #[test]
    fn subsets_have_k_members_and_are_stable_per_client() {
        let addrs = backends(20);
        let first = subset(&addrs, 42, 5);
        assert_eq!(first.len(), 5);
        assert_eq!(subset(&addrs, 42, 5), first);
        // The order of the input does not matter.
        let mut reversed = addrs.clone();
        reversed.reverse();
        let mut again = subset(&reversed, 42, 5);
        again.sort();
        let mut sorted = first.clone();
        sorted.sort();
        assert_eq!(again, sorted);
        assert_ne!(
            subset(&addrs, 43, 5),
            first,
            "another client, another subset"
        );
    }

    #[test]
    fn a_backend_joining_or_leaving_moves_at_most_one_member() {
        let addrs = backends(30);
        for client in 0..200 {
            let before = subset(&addrs, client, 4);
            let grown = subset(&backends(31), client, 4);
            assert!(before.iter().filter(|a| !grown.contains(a)).count() <= 1);
            let shrunk_set: Vec<_> = addrs[1..].to_vec();
            let shrunk = subset(&shrunk_set, client, 4);
            let lost = before.iter().filter(|a| !shrunk.contains(a)).count();
            assert!(lost <= usize::from(before.contains(&addrs[0])));
        }
    }

    #[test]
    fn backends_are_in_about_the_same_number_of_subsets() {
        let addrs = backends(10);
        let mut counts = vec![0usize; addrs.len()];
        for client in 0..2000 {
            for member in subset(&addrs, client, 3) {
                counts[addrs.iter().position(|a| *a == member).expect("member")] += 1;
            }
        }
        // 2000 clients x 3 / 10 backends = 600 each.
        for count in counts {
            assert!((480..720).contains(&count), "{count}");
        }
    }
}
