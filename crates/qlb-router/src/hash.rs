//! The hashes behind every fallback choice.
//!
//! Load balancer instances behind ECMP agree on the fallback only if they hash alike, in every
//! process and every build, so nothing here is seeded at run time and the algorithms are
//! spelled out rather than borrowed from `std` (whose `DefaultHasher` may change between
//! releases). With a [`HashKey`] shared by the cluster, fallback keys (DCIDs, client
//! addresses) go through SipHash-1-3 under it: a client without the key cannot tell which
//! backend a DCID lands on, so it cannot aim a flood of Initials at one. Without one, and for
//! the Maglev permutations (backend names, not client input), the fixed-key hash: FNV-1a-64
//! over the octets, then the MurmurHash3 `fmix64` finalizer so that every output bit depends
//! on every input bit, with a domain constant mixed in before it.

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

/// The secret key of the fallback hash, the same on every load balancer of a cluster (derive
/// it from the cluster secret). `Debug` never shows it.
///
/// ```
/// let key = qlb_router::HashKey::new([7; 16]);
/// assert_eq!(format!("{key:?}"), "HashKey(..)");
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HashKey {
    k0: u64,
    k1: u64,
}

impl HashKey {
    /// The key from 16 octets, as SipHash reads them (two little-endian words).
    pub fn new(octets: [u8; 16]) -> Self {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p] = octets;
        Self {
            k0: u64::from_le_bytes([a, b, c, d, e, f, g, h]),
            k1: u64::from_le_bytes([i, j, k, l, m, n, o, p]),
        }
    }
}

impl HashKey {
    /// The two SipHash key words, `k0` and `k1`: for a data path outside this process (the
    /// XDP program) that must hash alike. Secret: never log them.
    ///
    /// ```
    /// let key = qlb_router::HashKey::new([1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);
    /// assert_eq!(key.words(), (1, 2));
    /// ```
    pub fn words(&self) -> (u64, u64) {
        (self.k0, self.k1)
    }
}

impl std::fmt::Debug for HashKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HashKey(..)")
    }
}

/// The fixed-key 64-bit hash of `bytes` in `domain`.
pub(crate) fn stable_hash(domain: Domain, bytes: &[u8]) -> u64 {
    fmix64(fnv1a(bytes) ^ domain as u64)
}

/// The hash of a fallback key: SipHash-1-3 under `key`, or without one the fixed-key hash.
pub(crate) fn key_hash(key: Option<&HashKey>, bytes: &[u8]) -> u64 {
    match key {
        Some(key) => siphash::<1, 3>(key, bytes),
        None => stable_hash(Domain::Key, bytes),
    }
}

/// The hash of a client address as a fallback key: its IP as 16 octets (IPv4 as IPv4-mapped
/// IPv6, so that a dual-stack socket and an IPv4 socket agree) and its port.
pub(crate) fn address_hash(key: Option<&HashKey>, address: SocketAddr) -> u64 {
    let ip = match address {
        SocketAddr::V4(v4) => v4.ip().to_ipv6_mapped(),
        SocketAddr::V6(v6) => *v6.ip(),
    };
    let mut octets = [0u8; 18];
    let (ip_octets, port_octets) = octets.split_at_mut(16);
    ip_octets.copy_from_slice(&ip.octets());
    port_octets.copy_from_slice(&address.port().to_be_bytes());
    key_hash(key, &octets)
}

/// SipHash-C-D (Aumasson and Bernstein) of `bytes` under `key`: C rounds per 8-octet word, D
/// at the end. No allocation; a DCID is at most three words.
fn siphash<const C: usize, const D: usize>(key: &HashKey, bytes: &[u8]) -> u64 {
    let mut v = [
        key.k0 ^ 0x736f_6d65_7073_6575,
        key.k1 ^ 0x646f_7261_6e64_6f6d,
        key.k0 ^ 0x6c79_6765_6e65_7261,
        key.k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut words = bytes.chunks_exact(8);
    for word in words.by_ref() {
        let mut octets = [0u8; 8];
        octets.copy_from_slice(word);
        compress::<C>(&mut v, u64::from_le_bytes(octets));
    }
    // The last word: the remaining octets, and the length (mod 256) in the top octet.
    let mut last = [0u8; 8];
    let rest = words.remainder();
    last[..rest.len()].copy_from_slice(rest);
    last[7] = bytes.len() as u8;
    compress::<C>(&mut v, u64::from_le_bytes(last));
    v[2] ^= 0xff;
    for _ in 0..D {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn compress<const C: usize>(v: &mut [u64; 4], word: u64) {
    v[3] ^= word;
    for _ in 0..C {
        sip_round(v);
    }
    v[0] ^= word;
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13) ^ v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16) ^ v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21) ^ v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17) ^ v[2];
    v[2] = v[2].rotate_left(32);
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
            address_hash(None, "192.0.2.1:4433".parse().expect("address")),
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
        let key = HashKey::new([9; 16]);
        for key in [None, Some(&key)] {
            assert_eq!(address_hash(key, v4), address_hash(key, mapped));
            assert_ne!(address_hash(key, v4), address_hash(key, other_port));
        }
    }

    #[test]
    fn siphash_matches_the_reference_vectors() {
        // SipHash-2-4 vectors of the reference implementation (key 00..0f, message 00..n-1):
        // the same code with 1-3 rounds is what keys the fallback.
        let key = HashKey::new(std::array::from_fn(|i| i as u8));
        let message: Vec<u8> = (0..64).collect();
        assert_eq!(siphash::<2, 4>(&key, &[]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash::<2, 4>(&key, &message[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash::<2, 4>(&key, &message[..15]), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash::<2, 4>(&key, &message[..63]), 0x958a_324c_eb06_4572);
    }

    #[test]
    fn keyed_hashes_depend_on_the_key() {
        let dcid = [0x5a; 8];
        let (a, b) = (HashKey::new([1; 16]), HashKey::new([2; 16]));
        assert_eq!(key_hash(Some(&a), &dcid), key_hash(Some(&a), &dcid));
        assert_ne!(key_hash(Some(&a), &dcid), key_hash(Some(&b), &dcid));
        assert_ne!(key_hash(Some(&a), &dcid), key_hash(None, &dcid));
        assert_eq!(key_hash(None, &dcid), stable_hash(Domain::Key, &dcid));
    }
}
