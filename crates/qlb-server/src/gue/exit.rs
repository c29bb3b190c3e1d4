//! Which way a datagram quinn sends leaves: the plain socket, encapsulated back to the load
//! balancer, or straight from the VIP.

use std::net::{IpAddr, SocketAddr};

use super::return_map::{ReturnMap, Route};

/// How a server in GUE mode answers the clients whose datagrams arrived encapsulated (see
/// [`ServerBuilder::gue`](crate::ServerBuilder::gue)). Clients that reach the plain socket
/// directly are answered from it either way.
///
/// ```
/// use qlb_server::GueReturn;
///
/// assert_eq!(GueReturn::default(), GueReturn::ThroughLoadBalancer);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum GueReturn {
    /// Encapsulate each reply back to the load balancer that sent the client's latest
    /// datagram (inner source: the VIP address the client sent to; inner destination: the
    /// client), from the GUE socket; the load balancer sends it on from the VIP. Works on
    /// any network, and any load balancer instance can forward any reply.
    #[default]
    ThroughLoadBalancer,
    /// Send each reply straight to the client from the VIP address and port it sent to
    /// (direct server return), through a socket bound to the VIP. The VIP must be an
    /// address of this host (`ip addr add VIP/32 dev lo`) and the network must let
    /// packets from the VIP out.
    Direct,
}

/// Where one transmit goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Out of the plain socket, unchanged.
    Plain,
    /// Encapsulated from the GUE socket to `route.lb`, inner source `route.vip`.
    ThroughLoadBalancer {
        /// The way back.
        route: Route,
        /// Whether the client was unknown and the route is the fallback's guess.
        fallback: bool,
    },
    /// Unchanged, from a socket bound to `vip`.
    Direct {
        /// The VIP address the client sent to.
        vip: SocketAddr,
        /// Whether the client was unknown and the VIP port is the fallback's guess.
        fallback: bool,
    },
}

/// Chooses the exit of a transmit to `destination` that quinn wants sent from `src_ip` (the
/// address its connection's datagrams arrived at: the VIP for GUE clients). `plain_ip` is
/// the plain socket's address when it is bound to one (not a wildcard).
///
/// A client the map knows gets the GUE return, unless quinn sends from another address than
/// the VIP it used (the same client address also talking to the plain socket). An unknown
/// client whose datagrams arrived at a VIP (forgotten by a full map) gets the fallback: the
/// latest load balancer and the VIP's latest port. Everything else goes out plain.
pub(crate) fn choose(
    map: &ReturnMap,
    ret: GueReturn,
    destination: SocketAddr,
    src_ip: Option<IpAddr>,
    plain_ip: Option<IpAddr>,
) -> Exit {
    let known = map
        .get(destination)
        .filter(|route| src_ip.is_none_or(|ip| ip == route.vip.ip()));
    let (route, fallback) = match known {
        Some(route) => (route, false),
        None => {
            let fallback = src_ip
                .filter(|&ip| Some(ip) != plain_ip && map.is_vip(ip))
                .and_then(|ip| map.fallback(ip));
            match fallback {
                Some(route) => (route, true),
                None => return Exit::Plain,
            }
        }
    };
    match ret {
        GueReturn::ThroughLoadBalancer => Exit::ThroughLoadBalancer { route, fallback },
        GueReturn::Direct => Exit::Direct {
            vip: route.vip,
            fallback,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn map() -> (ReturnMap, Route) {
        let mut map = ReturnMap::default();
        let route = Route {
            vip: addr("198.51.100.1:443"),
            lb: addr("10.0.0.1:6080"),
            local: Some(ip("10.0.0.9")),
        };
        map.learn(addr("192.0.2.7:5000"), route);
        (map, route)
    }

    #[test]
    fn known_clients_return_the_configured_way() {
        let (map, route) = map();
        let client = addr("192.0.2.7:5000");
        let vip = Some(route.vip.ip());
        assert_eq!(
            choose(&map, GueReturn::ThroughLoadBalancer, client, vip, None),
            Exit::ThroughLoadBalancer {
                route,
                fallback: false
            }
        );
        assert_eq!(
            choose(&map, GueReturn::Direct, client, vip, None),
            Exit::Direct {
                vip: route.vip,
                fallback: false
            }
        );
        // quinn without a source address (no PKTINFO) still finds the client.
        assert_eq!(
            choose(&map, GueReturn::ThroughLoadBalancer, client, None, None),
            Exit::ThroughLoadBalancer {
                route,
                fallback: false
            }
        );
    }

    #[test]
    fn plain_clients_and_plain_connections_stay_plain() {
        let (map, _) = map();
        let plain_ip = Some(ip("10.0.0.9"));
        // A health checker on the plain socket.
        let checker = addr("10.0.0.1:40000");
        for ret in [GueReturn::ThroughLoadBalancer, GueReturn::Direct] {
            assert_eq!(choose(&map, ret, checker, plain_ip, plain_ip), Exit::Plain);
            // The GUE client's address on a connection that came in on the plain socket.
            assert_eq!(
                choose(&map, ret, addr("192.0.2.7:5000"), plain_ip, plain_ip),
                Exit::Plain
            );
            assert_eq!(choose(&map, ret, checker, None, None), Exit::Plain);
        }
    }

    #[test]
    fn forgotten_clients_of_a_vip_get_the_fallback() {
        let (map, route) = map();
        let forgotten = addr("192.0.2.99:7000");
        let vip = Some(route.vip.ip());
        assert_eq!(
            choose(&map, GueReturn::ThroughLoadBalancer, forgotten, vip, None),
            Exit::ThroughLoadBalancer {
                route,
                fallback: true
            }
        );
        assert_eq!(
            choose(&map, GueReturn::Direct, forgotten, vip, None),
            Exit::Direct {
                vip: route.vip,
                fallback: true
            }
        );
        // Not when the VIP's IP is also the plain socket's: then it is a plain client.
        assert_eq!(
            choose(&map, GueReturn::Direct, forgotten, vip, vip),
            Exit::Plain
        );
    }
}
