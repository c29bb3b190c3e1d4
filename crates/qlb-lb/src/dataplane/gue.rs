//! `gue` mode's decisions, without I/O: which GUE socket a client's datagrams leave from,
//! which VIP they were sent to, which listening socket a backend's re-encapsulated reply
//! leaves from, and the ECN codepoints on the way.
//!
//! Nothing here keeps state: a datagram's way through is a function of its addresses, so any
//! worker of any load balancer instance forwards any datagram alike, before and after a
//! restart.

use std::net::{IpAddr, SocketAddr};

use qlb_gue::Ecn;
use quinn_udp::EcnCodepoint;

use super::error::DataplaneError;

/// The settings of `gue` mode: where the encapsulated datagrams leave from and the backends'
/// encapsulated replies arrive.
///
/// ```
/// use qlb_lb::dataplane::GueOptions;
///
/// let gue = GueOptions { bind: "192.0.2.1:6080".parse()?, ports: 8 };
/// assert_eq!(gue.addresses()?.last().map(|a| a.port()), Some(6087));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GueOptions {
    /// The first GUE socket address. Port 0: `ports` free ports chosen at start, not
    /// consecutive and not the same after a restart (for tests).
    pub bind: SocketAddr,
    /// How many consecutive ports from `bind`'s, 1..=[`MAX_GUE_PORTS`]. Every worker binds
    /// each of them (SO_REUSEPORT) and sends a client's datagrams from the one its address
    /// hashes to, so the backends' RSS spreads clients over their queues.
    pub ports: u16,
}

/// The most GUE ports a data plane binds.
pub const MAX_GUE_PORTS: u16 = 256;

impl GueOptions {
    /// The addresses to bind, one per port (all port 0 when `bind`'s port is 0); refused
    /// when `ports` is 0, more than [`MAX_GUE_PORTS`] or runs past port 65535.
    ///
    /// ```
    /// use qlb_lb::dataplane::GueOptions;
    ///
    /// let past = GueOptions { bind: "192.0.2.1:65535".parse()?, ports: 2 };
    /// assert!(past.addresses().is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn addresses(&self) -> Result<Vec<SocketAddr>, DataplaneError> {
        let refused = DataplaneError::GuePorts {
            bind: self.bind,
            ports: self.ports,
        };
        if !(1..=MAX_GUE_PORTS).contains(&self.ports) {
            return Err(refused);
        }
        let first = self.bind.port();
        (0..self.ports)
            .map(|offset| match first {
                0 => Some(self.bind),
                _ => first
                    .checked_add(offset)
                    .map(|port| SocketAddr::new(self.bind.ip(), port)),
            })
            .collect::<Option<Vec<_>>>()
            .ok_or(refused)
    }

    /// The first of `listen` that one of the GUE ports would share (same port, an address
    /// in common): two SO_REUSEPORT sockets of one process on one address split its
    /// datagrams silently, so this must be refused.
    pub(crate) fn overlap(&self, listen: &[SocketAddr]) -> Option<usize> {
        let first = self.bind.port();
        if first == 0 {
            return None;
        }
        let last = u32::from(first) + u32::from(self.ports) - 1;
        listen.iter().position(|l| {
            let shares_ip = l.is_ipv4() == self.bind.is_ipv4()
                && (l.ip() == self.bind.ip()
                    || l.ip().is_unspecified()
                    || self.bind.ip().is_unspecified());
            shares_ip && (u32::from(first)..=last).contains(&u32::from(l.port()))
        })
    }
}

/// The VIP a client datagram was sent to: the listening socket's address, or, for a wildcard
/// listener, the destination address the kernel reported (`IP_PKTINFO`) with its port;
/// `None` when a wildcard listener's datagram came without one.
pub(super) fn vip(listener: SocketAddr, dst_ip: Option<IpAddr>) -> Option<SocketAddr> {
    match listener.ip().is_unspecified() {
        false => Some(listener),
        true => Some(SocketAddr::new(dst_ip?, listener.port())),
    }
}

/// The listening socket a reply from `vip` (its inner source) leaves through, and the source
/// address to give it: the listener bound to exactly `vip`, or else a wildcard listener of its
/// family and port, with `vip`'s address as source. `None`: not a VIP of this load balancer.
pub(super) fn reply_listener(
    listeners: impl IntoIterator<Item = SocketAddr> + Clone,
    vip: SocketAddr,
) -> Option<(usize, Option<IpAddr>)> {
    if let Some(exact) = listeners.clone().into_iter().position(|l| l == vip) {
        return Some((exact, None));
    }
    listeners
        .into_iter()
        .position(|l| {
            l.ip().is_unspecified() && l.port() == vip.port() && l.is_ipv4() == vip.is_ipv4()
        })
        .map(|wildcard| (wildcard, Some(vip.ip())))
}

/// Whether a reply may be sent to `client`: not to nobody (port 0, the unspecified address)
/// and not to a group (multicast), whatever a backend's inner header says.
pub(super) fn is_client(client: SocketAddr) -> bool {
    client.port() != 0 && !client.ip().is_unspecified() && !client.ip().is_multicast()
}

/// A received datagram's codepoint, for the inner header.
pub(super) fn inner_ecn(ecn: Option<EcnCodepoint>) -> Ecn {
    match ecn {
        None => Ecn::NotEct,
        Some(EcnCodepoint::Ect0) => Ecn::Ect0,
        Some(EcnCodepoint::Ect1) => Ecn::Ect1,
        Some(EcnCodepoint::Ce) => Ecn::Ce,
    }
}

/// The codepoint a decapsulated reply leaves with: the inner header's, marked CE when the
/// tunnel was congested on the way (an ECN-capable inner packet under a CE outer header,
/// RFC 6040 section 4.2).
pub(super) fn reply_ecn(outer: Option<EcnCodepoint>, inner: Ecn) -> Option<EcnCodepoint> {
    match (outer, inner) {
        (_, Ecn::NotEct) => None,
        (Some(EcnCodepoint::Ce), _) | (_, Ecn::Ce) => Some(EcnCodepoint::Ce),
        (_, Ecn::Ect0) => Some(EcnCodepoint::Ect0),
        (_, Ecn::Ect1) => Some(EcnCodepoint::Ect1),
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn the_vip_is_the_listener_or_the_wildcard_destination() {
        let dst = Some(addr("198.51.100.1:0").ip());
        assert_eq!(vip(addr("192.0.2.1:443"), dst), Some(addr("192.0.2.1:443")));
        assert_eq!(
            vip(addr("0.0.0.0:443"), dst),
            Some(addr("198.51.100.1:443"))
        );
        assert_eq!(vip(addr("[::]:443"), None), None);
    }

    #[test]
    fn replies_leave_from_their_exact_listener_or_a_wildcard_of_their_port() {
        let listeners = [
            addr("192.0.2.1:443"),
            addr("0.0.0.0:443"),
            addr("[::]:443"),
            addr("192.0.2.1:8443"),
        ];
        let find = |vip: &str| reply_listener(listeners, addr(vip));
        assert_eq!(find("192.0.2.1:443"), Some((0, None)));
        assert_eq!(find("192.0.2.1:8443"), Some((3, None)));
        assert_eq!(
            find("198.51.100.9:443"),
            Some((1, Some(addr("198.51.100.9:0").ip())))
        );
        assert_eq!(
            find("[2001:db8::1]:443"),
            Some((2, Some(addr("[2001:db8::1]:0").ip())))
        );
        assert_eq!(find("198.51.100.9:8443"), None, "no wildcard on that port");
        assert_eq!(find("192.0.2.1:444"), None);
        assert_eq!(
            reply_listener([addr("[::1]:443")], addr("127.0.0.1:443")),
            None
        );
    }

    #[test]
    fn nobody_and_groups_are_not_clients() {
        assert!(is_client(addr("192.0.2.7:5000")));
        assert!(!is_client(addr("192.0.2.7:0")));
        assert!(!is_client(addr("0.0.0.0:5000")));
        assert!(!is_client(addr("224.0.0.1:5000")));
        assert!(!is_client(addr("[ff02::1]:5000")));
    }

    #[test]
    fn codepoints_cross_the_tunnel_and_congestion_on_it_marks_the_reply() {
        use EcnCodepoint::{Ce, Ect0, Ect1};
        for ecn in [None, Some(Ect0), Some(Ect1), Some(Ce)] {
            assert_eq!(reply_ecn(None, inner_ecn(ecn)), ecn);
        }
        assert_eq!(reply_ecn(Some(Ce), Ecn::Ect0), Some(Ce));
        assert_eq!(reply_ecn(Some(Ce), Ecn::Ect1), Some(Ce));
        assert_eq!(reply_ecn(Some(Ce), Ecn::NotEct), None);
        assert_eq!(reply_ecn(Some(Ect1), Ecn::Ect0), Some(Ect0));
    }

    #[test]
    fn ports_run_from_bind_and_must_fit() {
        let gue = |bind: &str, ports| GueOptions {
            bind: addr(bind),
            ports,
        };
        let ports: Vec<u16> = gue("127.0.0.1:6080", 3)
            .addresses()
            .expect("fits")
            .iter()
            .map(SocketAddr::port)
            .collect();
        assert_eq!(ports, [6080, 6081, 6082]);
        assert_eq!(gue("127.0.0.1:0", 2).addresses().expect("free").len(), 2);
        assert!(gue("127.0.0.1:65535", 1).addresses().is_ok());
        for (bind, ports) in [
            ("127.0.0.1:65535", 2),
            ("127.0.0.1:1", 0),
            ("127.0.0.1:1", 257),
        ] {
            assert!(gue(bind, ports).addresses().is_err(), "{bind} {ports}");
        }
    }

    #[test]
    fn gue_ports_must_not_share_a_listening_address() {
        let gue = GueOptions {
            bind: addr("0.0.0.0:6080"),
            ports: 8,
        };
        let listen = [addr("127.0.0.1:443"), addr("127.0.0.1:6087")];
        assert_eq!(gue.overlap(&listen), Some(1));
        assert_eq!(gue.overlap(&[addr("[::1]:6081")]), None, "another family");
        assert_eq!(gue.overlap(&[addr("127.0.0.1:6088")]), None);
        let specific = GueOptions {
            bind: addr("127.0.0.1:6080"),
            ports: 1,
        };
        assert_eq!(specific.overlap(&[addr("127.0.0.2:6080")]), None);
        assert_eq!(specific.overlap(&[addr("0.0.0.0:6080")]), Some(0));
        let free = GueOptions {
            bind: addr("127.0.0.1:0"),
            ports: 8,
        };
        assert_eq!(free.overlap(&[addr("127.0.0.1:0")]), None);
    }
}
