//! Which hosts may send a server GUE datagrams: its load balancers. Whoever can reach the
//! GUE socket can claim any client address, and with direct return the server would answer
//! that address from the VIP; so a fleet lists its load balancers' networks and everything
//! else is dropped before it is decapsulated.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network GUE datagrams may come from: `10.0.0.0/24`, `2001:db8::/48`, or one
/// address (`10.0.0.7`, a /32 or /128).
///
/// ```
/// use qlb_server::GueSource;
///
/// let lbs: GueSource = "10.1.0.0/16".parse()?;
/// assert!(lbs.contains("10.1.200.3".parse()?));
/// assert!(!lbs.contains("10.2.0.1".parse()?));
/// // A dual-stack socket reports IPv4 senders as IPv4-mapped IPv6 addresses.
/// assert!(lbs.contains("::ffff:10.1.0.9".parse()?));
/// assert!("10.1.0.0/33".parse::<GueSource>().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GueSource {
    network: IpAddr,
    prefix_len: u8,
}

/// Why a [`GueSource`] did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GueSourceError {
    /// The part before the `/` is not an IP address.
    #[error("`{0}` is not an IP address or network (such as 10.0.0.0/24)")]
    Address(String),
    /// An IPv4 network written as IPv4-mapped IPv6, whose prefix length would be ambiguous.
    #[error("write `{0}` as an IPv4 network (such as 10.0.0.0/24)")]
    Mapped(String),
    /// The prefix length is not a number within the address's width.
    #[error("prefix length `{given}` is not between 0 and {max}")]
    PrefixLen {
        /// What was given after the `/`.
        given: String,
        /// 32 for IPv4, 128 for IPv6.
        max: u8,
    },
}

impl GueSource {
    /// Whether `ip` lies in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => within(
                network.to_bits().into(),
                ip.to_bits().into(),
                32,
                self.prefix_len,
            ),
            (IpAddr::V6(network), IpAddr::V6(ip)) => {
                within(network.to_bits(), ip.to_bits(), 128, self.prefix_len)
            }
            _ => false,
        }
    }
}

/// Whether the top `prefix_len` of `width` bits agree.
fn within(network: u128, ip: u128, width: u8, prefix_len: u8) -> bool {
    let ignored = u32::from(width - prefix_len);
    network.checked_shr(ignored).unwrap_or(0) == ip.checked_shr(ignored).unwrap_or(0)
}

impl FromStr for GueSource {
    type Err = GueSourceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network = address
            .parse::<IpAddr>()
            .map_err(|_| GueSourceError::Address(address.to_owned()))?;
        if network.to_canonical() != network {
            return Err(GueSourceError::Mapped(text.to_owned()));
        }
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            None => max,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|&len| len <= max)
                .ok_or_else(|| GueSourceError::PrefixLen {
                    given: prefix.to_owned(),
                    max,
                })?,
        };
        Ok(Self {
            network,
            prefix_len,
        })
    }
}

impl fmt::Display for GueSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// The networks a server accepts GUE from; empty means any source.
#[derive(Clone, Debug, Default)]
pub(crate) struct GueSources(Vec<GueSource>);

impl GueSources {
    pub(crate) fn new(sources: Vec<GueSource>) -> Self {
        Self(sources)
    }

    /// Whether a datagram from `ip` is accepted.
    pub(crate) fn admits(&self, ip: IpAddr) -> bool {
        self.0.is_empty() || self.0.iter().any(|source| source.contains(ip))
    }

    /// Whether any source at all is accepted.
    pub(crate) fn is_open(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(text: &str) -> GueSource {
        text.parse().expect("valid")
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn networks_contain_their_addresses_and_nothing_else() {
        let net = source("192.0.2.0/24");
        assert!(net.contains(ip("192.0.2.0")) && net.contains(ip("192.0.2.255")));
        assert!(!net.contains(ip("192.0.3.0")) && !net.contains(ip("2001:db8::1")));
        let one = source("192.0.2.7");
        assert_eq!(one.to_string(), "192.0.2.7/32");
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6 = source("2001:db8:1::/48");
        assert!(v6.contains(ip("2001:db8:1:ffff::1")) && !v6.contains(ip("2001:db8:2::1")));
        assert!(!v6.contains(ip("192.0.2.7")));
    }

    #[test]
    fn zero_length_prefixes_take_every_address_of_their_family() {
        assert!(source("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!source("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(source("::/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        assert!(source("10.0.0.0/8").contains(ip("::ffff:10.9.8.7")));
    }

    #[test]
    fn bad_text_is_refused_with_the_reason() {
        for (text, error) in [
            ("10.0.0.0/33", "between 0 and 32"),
            ("2001:db8::/129", "between 0 and 128"),
            ("10.0.0.0/x", "`x`"),
            ("::ffff:10.0.0.0/104", "as an IPv4 network"),
            ("lb.example", "not an IP address"),
            ("", "not an IP address"),
        ] {
            let refused = text.parse::<GueSource>().expect_err(text).to_string();
            assert!(refused.contains(error), "{text}: {refused}");
        }
    }

    #[test]
    fn an_empty_list_admits_everyone_and_a_list_only_its_networks() {
        assert!(GueSources::default().admits(ip("198.51.100.1")));
        let lbs = GueSources::new(vec![source("10.0.0.0/24"), source("2001:db8::1")]);
        assert!(lbs.admits(ip("10.0.0.3")) && lbs.admits(ip("2001:db8::1")));
        assert!(!lbs.admits(ip("10.0.1.3")) && !lbs.admits(ip("2001:db8::2")));
        assert!(!lbs.is_open());
    }
}
