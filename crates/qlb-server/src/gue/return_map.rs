//! The way back to each client: which VIP it sent to and which load balancer encapsulated
//! its latest datagram. Bounded, since anyone who can reach the GUE port creates entries.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Clients remembered at most, over both generations.
pub(crate) const CAPACITY: usize = 65_536;

/// VIP IPs whose latest port is kept for the fallback. Inner destinations are the sender's
/// choice, so this is bounded too.
const VIP_IPS: usize = 64;

/// How a client's latest datagram arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Route {
    /// The VIP socket address the client sent to (the inner destination).
    pub(crate) vip: SocketAddr,
    /// The load balancer that encapsulated it (the outer source).
    pub(crate) lb: SocketAddr,
    /// This server's address the load balancer sent to (the outer destination), when the
    /// socket reports it: replies leave from it, so a wildcard `--gue` still answers from
    /// the address the load balancer knows.
    pub(crate) local: Option<IpAddr>,
}

/// Client address -> [`Route`], in two generations: entries go into the current one; when it
/// is full it becomes the previous one and the old previous one is forgotten. A client that
/// keeps sending is always in the current or previous generation; lookups and insertions are
/// O(1) and no list is kept in order.
#[derive(Debug)]
pub(crate) struct ReturnMap {
    current: HashMap<SocketAddr, Route>,
    previous: HashMap<SocketAddr, Route>,
    /// Entries per generation: half the capacity.
    generation: usize,
    /// The latest port seen for each VIP IP.
    vip_ports: HashMap<IpAddr, u16>,
    /// The latest load balancer seen, and this server's address it sent to.
    latest_lb: Option<(SocketAddr, Option<IpAddr>)>,
}

impl ReturnMap {
    /// A map remembering up to `capacity` clients (at least 2).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            current: HashMap::new(),
            previous: HashMap::new(),
            generation: (capacity / 2).max(1),
            vip_ports: HashMap::new(),
            latest_lb: None,
        }
    }

    /// Records that `client`'s latest datagram came by `route`. Returns how many clients
    /// were forgotten to make room (0 nearly always).
    pub(crate) fn learn(&mut self, client: SocketAddr, route: Route) -> usize {
        if self.latest_lb != Some((route.lb, route.local)) {
            self.latest_lb = Some((route.lb, route.local));
        }
        let vip_ip = route.vip.ip();
        if self.vip_ports.get(&vip_ip) != Some(&route.vip.port()) {
            if self.vip_ports.len() >= VIP_IPS && !self.vip_ports.contains_key(&vip_ip) {
                self.vip_ports.clear();
            }
            self.vip_ports.insert(vip_ip, route.vip.port());
        }
        if self.current.get(&client) == Some(&route) {
            return 0;
        }
        let mut forgotten = 0;
        if self.current.len() >= self.generation && !self.current.contains_key(&client) {
            let current = &self.current;
            forgotten = self
                .previous
                .keys()
                .filter(|client| !current.contains_key(client))
                .count();
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(client, route);
        forgotten
    }

    /// The route of `client`'s latest datagram, if it is remembered.
    pub(crate) fn get(&self, client: SocketAddr) -> Option<Route> {
        self.current
            .get(&client)
            .or_else(|| self.previous.get(&client))
            .copied()
    }

    /// A route for a client no longer remembered whose connection was on `vip_ip`: the
    /// latest port seen for that VIP IP and the latest load balancer.
    pub(crate) fn fallback(&self, vip_ip: IpAddr) -> Option<Route> {
        let port = *self.vip_ports.get(&vip_ip)?;
        let (lb, local) = self.latest_lb?;
        Some(Route {
            vip: SocketAddr::new(vip_ip, port),
            lb,
            local,
        })
    }

    /// Whether `ip` has been seen as a VIP (an inner destination).
    pub(crate) fn is_vip(&self, ip: IpAddr) -> bool {
        self.vip_ports.contains_key(&ip)
    }
}

impl Default for ReturnMap {
    fn default() -> Self {
        Self::new(CAPACITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn route(vip: &str, lb: &str) -> Route {
        Route {
            vip: addr(vip),
            lb: addr(lb),
            local: None,
        }
    }

    #[test]
    fn the_latest_datagram_decides_the_route() {
        let mut map = ReturnMap::default();
        let client = addr("192.0.2.7:5000");
        assert_eq!(map.get(client), None);
        map.learn(client, route("198.51.100.1:443", "10.0.0.1:6080"));
        // Another load balancer instance takes over: replies follow it.
        map.learn(client, route("198.51.100.1:443", "10.0.0.2:6080"));
        assert_eq!(
            map.get(client),
            Some(route("198.51.100.1:443", "10.0.0.2:6080"))
        );
    }

    #[test]
    fn a_full_map_forgets_the_oldest_generation_and_counts_it() {
        let mut map = ReturnMap::new(4);
        let r = route("198.51.100.1:443", "10.0.0.1:6080");
        let clients: Vec<SocketAddr> = (1..=6)
            .map(|port| SocketAddr::new("192.0.2.1".parse().expect("ip"), port))
            .collect();
        assert_eq!(map.learn(clients[0], r), 0);
        assert_eq!(map.learn(clients[1], r), 0);
        // Generation of 2 full: 0 and 1 become the previous generation.
        assert_eq!(map.learn(clients[2], r), 0);
        // Client 0 sends again: back in the current generation.
        assert_eq!(map.learn(clients[0], r), 0);
        // Full again: the previous generation goes, but client 0 was refreshed: only
        // client 1 is forgotten.
        assert_eq!(map.learn(clients[3], r), 1);
        assert_eq!(map.get(clients[1]), None);
        for &kept in &[clients[0], clients[2], clients[3]] {
            assert_eq!(map.get(kept), Some(r), "{kept}");
        }
        assert!(map.current.len() + map.previous.len() <= 4);
    }

    #[test]
    fn strangers_cannot_grow_it_past_its_capacity() {
        let mut map = ReturnMap::new(1000);
        let mut forgotten = 0;
        for i in 0..10_000u32 {
            let client = SocketAddr::new(IpAddr::from(i.to_be_bytes()), 1);
            let vip = SocketAddr::new(IpAddr::from((i + 1).to_be_bytes()), 443);
            forgotten += map.learn(
                client,
                Route {
                    vip,
                    lb: addr("10.0.0.1:1"),
                    local: None,
                },
            );
        }
        assert!(map.current.len() + map.previous.len() <= 1000);
        assert!(map.vip_ports.len() <= VIP_IPS);
        assert_eq!(forgotten, 10_000 - map.current.len() - map.previous.len());
    }

    #[test]
    fn the_fallback_uses_the_latest_lb_and_the_vips_latest_port() {
        let mut map = ReturnMap::default();
        let vip_ip: IpAddr = "198.51.100.1".parse().expect("ip");
        assert_eq!(map.fallback(vip_ip), None);
        map.learn(
            addr("192.0.2.7:5000"),
            route("198.51.100.1:443", "10.0.0.1:6080"),
        );
        map.learn(
            addr("192.0.2.8:5000"),
            route("198.51.100.2:8443", "10.0.0.2:6080"),
        );
        assert!(map.is_vip(vip_ip));
        assert!(!map.is_vip("192.0.2.7".parse().expect("ip")));
        assert_eq!(
            map.fallback(vip_ip),
            Some(route("198.51.100.1:443", "10.0.0.2:6080"))
        );
    }
}
