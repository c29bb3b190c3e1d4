//! Where a client finds its backends: fixed addresses, a DNS name it polls, or a list the
//! application updates.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use thiserror::Error;
use tokio::sync::watch;

/// The scheme prefix of a DNS target.
const DNS_SCHEME: &str = "dns://";

/// A target string that does not parse.
///
/// ```
/// let err = "no-port".parse::<qlb_client::Target>().unwrap_err();
/// assert_eq!(err.to_string(), "target \"no-port\": expected host:port");
/// ```
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("target {input:?}: {problem}")]
pub struct TargetError {
    input: String,
    problem: &'static str,
}

impl TargetError {
    fn new(input: &str, problem: &'static str) -> Self {
        Self {
            input: input.to_owned(),
            problem,
        }
    }
}

/// A host (a DNS name or an IP address) and a port, as in `backend.internal:443`,
/// `10.0.0.7:443` or `[2001:db8::7]:443`.
///
/// ```
/// use qlb_client::HostPort;
///
/// let v6: HostPort = "[::1]:4433".parse()?;
/// assert_eq!((v6.host(), v6.port()), ("::1", 4433));
/// assert_eq!(v6.to_string(), "[::1]:4433");
/// assert!(v6.ip().is_some());
/// assert!("api.internal:443".parse::<HostPort>()?.ip().is_none());
/// # Ok::<(), qlb_client::TargetError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    host: String,
    port: u16,
}

impl HostPort {
    /// The host: a name, or an IP address without brackets.
    ///
    /// ```
    /// let target: qlb_client::HostPort = "localhost:443".parse()?;
    /// assert_eq!(target.host(), "localhost");
    /// # Ok::<(), qlb_client::TargetError>(())
    /// ```
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port.
    ///
    /// ```
    /// let target: qlb_client::HostPort = "localhost:443".parse()?;
    /// assert_eq!(target.port(), 443);
    /// # Ok::<(), qlb_client::TargetError>(())
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address, when the host is an IP address rather than a name.
    ///
    /// ```
    /// let target: qlb_client::HostPort = "127.0.0.1:443".parse()?;
    /// assert_eq!(target.ip(), Some("127.0.0.1:443".parse()?));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ip(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.host.parse().ok()?;
        Some(SocketAddr::new(ip, self.port))
    }
}

impl FromStr for HostPort {
    type Err = TargetError;

    fn from_str(input: &str) -> Result<Self, TargetError> {
        let error = |problem| TargetError::new(input, problem);
        let (host, port) = input.rsplit_once(':').ok_or(error("expected host:port"))?;
        let port = port
            .parse()
            .map_err(|_| error("the port is not a number"))?;
        let host = match host.strip_prefix('[') {
            Some(bracketed) => {
                let ip = bracketed
                    .strip_suffix(']')
                    .ok_or(error("unclosed '[' in an IPv6 address"))?;
                ip.parse::<std::net::Ipv6Addr>()
                    .map_err(|_| error("not an IPv6 address between '[' and ']'"))?;
                ip
            }
            None if host.contains(':') => {
                return Err(error("write IPv6 addresses in brackets: [::1]:443"));
            }
            None => host,
        };
        if host.is_empty() {
            return Err(error("the host is empty"));
        }
        if host.contains(|c: char| c.is_whitespace() || c == '/' || c == ',') {
            return Err(error("the host is not a name or an address"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where a [`Client`](crate::Client) finds its backends.
///
/// Parsed from `host:port` (one backend), `a:1,b:2` (a fixed list) or `dns://name:port`
/// (every A and AAAA record of `name`, polled):
///
/// ```
/// use qlb_client::Target;
///
/// assert!(matches!("10.0.0.1:443,10.0.0.2:443".parse()?, Target::Static(list) if list.len() == 2));
/// assert!(matches!("dns://backends.default.svc:443".parse()?, Target::Dns(_)));
/// # Ok::<(), qlb_client::TargetError>(())
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Target {
    /// Fixed backends. Host names among them are resolved once, when the client starts.
    Static(Vec<HostPort>),
    /// Every A and AAAA record of a DNS name, re-resolved periodically, with the port.
    Dns(HostPort),
    /// A list the application updates while the client runs.
    List(BackendList),
}

impl Target {
    /// The host name to present in TLS (SNI) by default: the first host of a static list,
    /// or the DNS name. None for a [`BackendList`].
    ///
    /// ```
    /// let target: qlb_client::Target = "dns://api.internal:443".parse()?;
    /// assert_eq!(target.host(), Some("api.internal"));
    /// # Ok::<(), qlb_client::TargetError>(())
    /// ```
    pub fn host(&self) -> Option<&str> {
        match self {
            Self::Static(list) => list.first().map(HostPort::host),
            Self::Dns(name) => Some(name.host()),
            Self::List(_) => None,
        }
    }
}

impl FromStr for Target {
    type Err = TargetError;

    fn from_str(input: &str) -> Result<Self, TargetError> {
        if let Some(name) = input.strip_prefix(DNS_SCHEME) {
            let name: HostPort = name.parse()?;
            if name.ip().is_some() {
                return Err(TargetError::new(input, "a dns:// target needs a name"));
            }
            return Ok(Self::Dns(name));
        }
        let list = input
            .split(',')
            .map(|entry| match entry.trim() {
                "" if input.contains(',') => Err(TargetError::new(input, "an empty entry")),
                entry => entry.parse(),
            })
            .collect::<Result<Vec<HostPort>, _>>()?;
        Ok(Self::Static(list))
    }
}

impl From<BackendList> for Target {
    fn from(list: BackendList) -> Self {
        Self::List(list)
    }
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Self {
        Self::Static(vec![HostPort {
            host: addr.ip().to_string(),
            port: addr.port(),
        }])
    }
}

/// Backend addresses the application sets and changes while the client runs (its own
/// service discovery, or a test scaling a pool up). Clones share the list.
///
/// ```
/// use qlb_client::{BackendList, Target};
///
/// let list = BackendList::new(["127.0.0.1:4433".parse()?]);
/// let target = Target::from(list.clone());
/// list.set(["127.0.0.1:4433".parse()?, "127.0.0.1:4434".parse()?]);
/// assert_eq!(list.get().len(), 2);
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone, Debug)]
pub struct BackendList(watch::Sender<Arc<[SocketAddr]>>);

impl BackendList {
    /// A list holding `addrs`.
    ///
    /// ```
    /// let list = qlb_client::BackendList::new(Vec::new());
    /// assert!(list.get().is_empty());
    /// ```
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self(watch::Sender::new(addrs.into_iter().collect()))
    }

    /// Replaces the list; clients using it adopt the change at once.
    ///
    /// ```
    /// let list = qlb_client::BackendList::new(Vec::new());
    /// list.set(["[::1]:443".parse()?]);
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn set(&self, addrs: impl IntoIterator<Item = SocketAddr>) {
        self.0.send_replace(addrs.into_iter().collect());
    }

    /// The current list.
    ///
    /// ```
    /// let list = qlb_client::BackendList::new(["10.0.0.1:443".parse()?]);
    /// assert_eq!(list.get(), ["10.0.0.1:443".parse()?]);
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn get(&self) -> Vec<SocketAddr> {
        self.0.borrow().to_vec()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<[SocketAddr]>> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(input: &str) -> String {
        input.parse::<Target>().expect_err(input).to_string()
    }

    #[test]
    fn host_ports_parse_names_and_addresses() {
        for (input, host, port) in [
            ("localhost:4433", "localhost", 4433),
            ("10.1.2.3:1", "10.1.2.3", 1),
            ("[2001:db8::1]:443", "2001:db8::1", 443),
            (
                "backends.default.svc.cluster.local:8443",
                "backends.default.svc.cluster.local",
                8443,
            ),
        ] {
            let parsed: HostPort = input.parse().expect(input);
            assert_eq!((parsed.host(), parsed.port()), (host, port));
            assert_eq!(parsed.to_string(), input);
        }
    }

    #[test]
    fn bad_targets_say_what_is_wrong() {
        for (input, expected) in [
            ("localhost", "expected host:port"),
            (":443", "the host is empty"),
            ("a:http", "the port is not a number"),
            ("a:70000", "the port is not a number"),
            ("::1:443", "write IPv6 addresses in brackets"),
            ("[::1:443", "unclosed '['"),
            ("[nope]:443", "not an IPv6 address"),
            ("a:1,,b:2", "an empty entry"),
            ("", "expected host:port"),
            ("dns://10.0.0.1:53", "a dns:// target needs a name"),
            ("dns://name", "expected host:port"),
            ("a b:1", "not a name or an address"),
        ] {
            let message = problem(input);
            assert!(message.contains(expected), "{input}: {message}");
        }
    }

    #[test]
    fn targets_parse_lists_and_dns_names() {
        let Ok(Target::Static(list)) = "a:1, b:2 ,[::1]:3".parse() else {
            panic!("a static list");
        };
        assert_eq!(
            list.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["a:1", "b:2", "[::1]:3"]
        );
        let Ok(Target::Dns(name)) = "dns://svc.local:443".parse() else {
            panic!("a DNS target");
        };
        assert_eq!(name.to_string(), "svc.local:443");
    }

    #[test]
    fn the_default_server_name_is_the_first_host() {
        let target: Target = "b.example:1,c.example:2".parse().expect("list");
        assert_eq!(target.host(), Some("b.example"));
        let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        assert_eq!(Target::from(addr).host(), Some("127.0.0.1"));
        assert_eq!(Target::from(BackendList::new([addr])).host(), None);
    }
}
