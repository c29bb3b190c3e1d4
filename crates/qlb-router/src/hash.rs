//! The fixed-key hash behind every fallback choice.
//!
//! Load balancer instances behind ECMP agree on the fallback only if they hash alike, in every
//! process and every build, so nothing here is seeded at run time and the algorithm is spelled
//! out rather than borrowed from `std` (whose `DefaultHasher` may change between releases):
//! FNV-1a-64 over the octets, then the MurmurHash3 `fmix64` finalizer so that every output bit
//! depends on every input bit, with a domain constant mixed in before it.

use std::net::SocketAddr;

const FNV_OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Separates the uses of the hash, so that the values of one say nothing about another.
#[derive(Clone, Copy, Debug)]
#[repr(u64)]
pub(crate) enum Domain {
    /// A fallback key: a DCID or a client address.
    Key = 0x6b65_7920_2020_2020,
    /// The start of a backend's Maglev permutation.
    MaglevOffset = 0x6f66_6673_6574_2020,
    /// The step of a backend's Maglev permutation.
    MaglevSkip = 0x736b_6970_2020_2020,
    /// A backend's key in the flow tables.
    BackendName = 0x6e61_6d65_2020_2020,
}

/// The fixed-key 64-bit hash of `bytes` in `domain`.
pub(crate) fn stable_hash(domain: Domain, bytes: &[u8]) -> u64 {
    fmix64(fnv1a(bytes) ^ domain as u64)
}

/// The fixed-key hash of a client address: its IP as 16 octets (IPv4 as IPv4-mapped IPv6, so
/// that a dual-stack socket and an IPv4 socket agree) and its port.
pub(crate) fn address_hash(address: SocketAddr) -> u64 {
    let ip = match address {
        SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped(),
        SocketAddr::V6(v6) => *v6.ip(),
    };
    let mut octets = [0u8; 18];
    let (ip_octets, port_octets) = octets.split_at_mut(16);
    ip_octets.copy_from_slice(&ip.octets());
    port_octets.copy_from_slice(&address.port().to_be_bytes());
    stable_hash(Domain::Key, &octets)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(FNV_OFFSET_BASIS, |hash, &octet| {
        (hash ^ u64::from(octet)).wrapping_mul(FNV_PRIME)
    })
}

/// MurmurHash3's 64-bit finalizer: a bijection with full avalanche.
fn fmix64(mut hash: u64) -> u64 {
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xff51_afd7_ed55_8ccd);
    hash ^= hash >> 33;
    hash = hash.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    hash ^ (hash >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_published_vectors() {
        // FNV-1a-64 vectors from draft-eastlake-fnv.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn hash_values_never_change() {
        // Every LB instance, of every build, must compute exactly these values (computed
        // independently from the definitions): a change here breaks fallback agreement
        // between instances running different versions.
        assert_eq!(stable_hash(Domain::Key, b""), 0x2729_3a50_188c_0d01);
        assert_eq!(
            stable_hash(Domain::Key, &[1, 2, 3, 4, 5, 6, 7, 8]),
            0x0fdc_eaf2_d089_5a22
        );
        assert_eq!(
            stable_hash(Domain::MaglevOffset, b"backend-a"),
            0x3888_5bd6_d29f_7bba
        );
        assert_eq!(
            address_hash("192.0.2.1:4433".parse().expect("address")),
            0x0349_4792_d0a7_7dc8
        );
    }

    #[test]
    fn domains_and_inputs_separate() {
        let key = stable_hash(Domain::Key, b"backend-a");
        let offset = stable_hash(Domain::MaglevOffset, b"backend-a");
        let skip = stable_hash(Domain::MaglevSkip, b"backend-a");
        assert!(key != offset && offset != skip && key != skip);
        assert_ne!(
            stable_hash(Domain::Key, b"backend-a"),
            stable_hash(Domain::Key, b"backend-b")
        );
    }

    #[test]
    fn ipv4_and_its_mapped_form_hash_alike() {
        let v4: SocketAddr = "192.0.2.1:4433".parse().expect("v4");
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:4433".parse().expect("v6");
        let other_port: SocketAddr = "192.0.2.1:4434".parse().expect("v4");
        assert_eq!(address_hash(v4), address_hash(mapped));
        assert_ne!(address_hash(v4), address_hash(other_port));
    }
}
