//! The flow table's key, and its hash: the cheapest one that keeps equal keys equal.

use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};

/// A flow: one client of one listening address, to one backend (its upstream socket is
/// connected to it). A client whose connections go to several backends through one port, as
/// a client endpoint with several connections does, has a flow for each.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) struct FlowKey {
    pub(super) listener: usize,
    pub(super) client: SocketAddr,
    pub(super) backend: SocketAddr,
}

/// Two to four integer writes instead of the derived field-by-field ones: the flow table's
/// keyed SipHash runs for every datagram, and each write costs about as much as compressing
/// its octets. Equal keys hash equally (the fields left out, IPv6 flow info and scope, and
/// listener bits shifted out, only make more keys share a hash).
impl Hash for FlowKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        write_address(state, self.client, self.listener as u64);
        write_address(state, self.backend, 0);
    }
}

/// Writes `address` with `extra` beside its port.
#[inline]
fn write_address<H: Hasher>(state: &mut H, address: SocketAddr, extra: u64) {
    let rest = extra << 16 | u64::from(address.port());
    match address.ip() {
        IpAddr::V4(ip) => state.write_u64(u64::from(ip.to_bits()) << 32 ^ rest),
        IpAddr::V6(ip) => {
            state.write_u128(ip.to_bits());
            state.write_u64(rest);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use super::*;

    fn hash(key: &FlowKey) -> u64 {
        let mut hasher = DefaultHasher::new();
        key.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn equal_keys_hash_equally_and_fields_tell_keys_apart() {
        let key = |listener, client: &str, backend: &str| FlowKey {
            listener,
            client: client.parse().expect("address"),
            backend: backend.parse().expect("address"),
        };
        let b = "198.51.100.1:443";
        let v4 = key(1, "192.0.2.1:4433", b);
        assert_eq!(hash(&v4), hash(&key(1, "192.0.2.1:4433", b)));
        for other in [
            key(2, "192.0.2.1:4433", b),
            key(1, "192.0.2.2:4433", b),
            key(1, "192.0.2.1:4434", b),
            key(1, "192.0.2.1:4433", "198.51.100.2:443"),
            key(1, "192.0.2.1:4433", "198.51.100.1:444"),
            key(1, "192.0.2.1:4433", "[2001:db8::2]:443"),
            key(1, "[2001:db8::1]:4433", b),
        ] {
            assert_ne!(hash(&v4), hash(&other), "{other:?}");
        }
    }
}
