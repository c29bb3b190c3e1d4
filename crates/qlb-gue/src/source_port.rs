//! Which of an encapsulator's source ports a client's packets leave from.

use std::net::{IpAddr, SocketAddr};

/// The index, among `ports` source ports (at least 1), that `client`'s encapsulated packets
/// leave from: a hash of its address, so one flow keeps one outer source port (its packets
/// stay in order on one receive queue of the backend) and many flows spread over them
/// (Katran's "RSS-friendly" encapsulation). The hash has no key: every encapsulator (the
/// userspace data plane's workers, the XDP program) and every instance picks alike, so a
/// restart or a change of path changes nothing the backend sees.
///
/// ```
/// let client = "192.0.2.7:50000".parse()?;
/// let index = qlb_gue::source_port_index(client, 8);
/// assert!(index < 8);
/// assert_eq!(index, qlb_gue::source_port_index(client, 8));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
// Called per datagram by the data plane in another crate: inlinable there, as it was when
// it lived beside its caller.
#[inline]
pub fn source_port_index(client: SocketAddr, ports: usize) -> usize {
    let address = match client.ip() {
        IpAddr::V4(ip) => u64::from(ip.to_bits()),
        IpAddr::V6(ip) => {
            let bits = ip.to_bits();
            (bits >> 64) as u64 ^ bits as u64
        }
    };
    // The splitmix64 finalizer: every input bit moves every output bit.
    let mut x = address.rotate_left(16) ^ u64::from(client.port());
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    // Lemire's reduction: uniform without a division.
    ((u128::from(x) * ports.max(1) as u128) >> 64) as usize
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn a_client_keeps_its_port_and_clients_spread_over_all_ports() {
        let mut per_port: BTreeMap<usize, usize> = BTreeMap::new();
        for n in 0..8000u32 {
            let client = SocketAddr::from(([10, (n >> 16) as u8, (n >> 8) as u8, n as u8], 443));
            let index = source_port_index(client, 8);
            assert_eq!(index, source_port_index(client, 8), "stable");
            assert!(index < 8);
            *per_port.entry(index).or_default() += 1;
        }
        // 1,000 each on average; a fair hash stays well within 20% of it.
        assert_eq!(per_port.len(), 8);
        assert!(
            per_port.values().all(|&n| (800..1200).contains(&n)),
            "{per_port:?}"
        );
        // The port alone moves it, IPv6 too.
        let ports: BTreeSet<usize> = (50_000..50_100)
            .map(|port| source_port_index(SocketAddr::new(addr("[2001:db8::1]:0").ip(), port), 8))
            .collect();
        assert_eq!(ports.len(), 8);
        assert_eq!(source_port_index(addr("192.0.2.1:1"), 1), 0);
        assert_eq!(source_port_index(addr("192.0.2.1:1"), 0), 0);
    }
}
