//! The validated configuration: what the file says, in types.

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use qlb_router::BackendState;
use quic_lb::{Config, ServerId};

use super::secret::Secret;

/// How the load balancer forwards datagrams.
///
/// ```
/// use qlb_lb::config::LbConfig;
///
/// let config = LbConfig::from_toml(r#"
///     listen = ["127.0.0.1:4433"]
///     [[backend]]
///     name = "b1"
///     addr = "127.0.0.1:5001"
///     server_id = "01"
/// "#, ".".as_ref())?;
/// assert_eq!(config.mode, qlb_lb::config::ForwardingMode::Proxy);
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub enum ForwardingMode {
    /// The load balancer relays both directions through a per-flow upstream socket;
    /// clients only ever see the listening address.
    Proxy,
    /// Each client datagram, unchanged, is wrapped in Generic UDP Encapsulation (inner source
    /// the client, inner destination the VIP) and sent to the backend's `addr` from the
    /// `[gue]` sockets, without flows; backends answer the client directly, or
    /// re-encapsulated through any load balancer's `[gue]` sockets.
    Gue(GueConfig),
    /// `gue` mode with an XDP program on `[xdp] interface` that makes the same decisions
    /// and writes the same GUE packets in the kernel, passing up to the userspace data plane
    /// only what it cannot decide; where the program cannot be loaded, `gue` mode as it is.
    Xdp(XdpConfig),
}

impl ForwardingMode {
    /// The mode's name in the file (`mode = "..."`).
    ///
    /// ```
    /// assert_eq!(qlb_lb::config::ForwardingMode::Proxy.as_str(), "proxy");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Proxy => "proxy",
            Self::Gue(_) => "gue",
            Self::Xdp(_) => "xdp",
        }
    }

    /// The `[gue]` table of `gue` and `xdp` modes.
    ///
    /// ```
    /// assert!(qlb_lb::config::ForwardingMode::Proxy.gue().is_none());
    /// ```
    pub fn gue(&self) -> Option<&GueConfig> {
        match self {
            Self::Proxy => None,
            Self::Gue(gue) => Some(gue),
            Self::Xdp(xdp) => Some(&xdp.gue),
        }
    }
}

/// `mode = "xdp"`: the `[gue]` table, and the `[xdp]` table's interface and attach mode.
///
/// ```
/// use qlb_lb::config::{ForwardingMode, LbConfig, XdpAttach};
///
/// let config = LbConfig::from_toml(r#"
///     listen = ["192.0.2.1:443"]
///     mode = "xdp"
///     [gue]
///     bind = "10.0.0.1:6080"
///     [xdp]
///     interface = "eth0"
///     [health]
///     enabled = false
/// "#, ".".as_ref())?;
/// let ForwardingMode::Xdp(xdp) = config.mode else { panic!("xdp") };
/// assert_eq!((xdp.interface.as_str(), xdp.attach), ("eth0", XdpAttach::Auto));
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct XdpConfig {
    /// The GUE sockets: the program's outer source is `bind`'s address and ports, so
    /// `bind` must name an address of the interface (not the unspecified one) and a port.
    pub gue: GueConfig,
    /// The interface the program runs on: where client datagrams to the VIPs arrive.
    pub interface: InterfaceName,
    /// Native (driver) or generic XDP.
    pub attach: XdpAttach,
}

/// `[xdp] attach`: how the program is attached.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub enum XdpAttach {
    /// `"auto"` (the default): native where the driver has XDP, else generic.
    #[default]
    Auto,
    /// `"native"`: in the driver, before any socket buffer; refused where the driver has
    /// no XDP.
    Native,
    /// `"generic"`: in the network stack, on any device, slower.
    Generic,
}

impl XdpAttach {
    /// Its name in the file.
    ///
    /// ```
    /// assert_eq!(qlb_lb::config::XdpAttach::Generic.as_str(), "generic");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Native => "native",
            Self::Generic => "generic",
        }
    }
}

/// A network interface's name: 1 to 15 octets (the kernel's `IFNAMSIZ` less its NUL), no
/// `/`, whitespace or NUL.
///
/// ```
/// use qlb_lb::config::InterfaceName;
///
/// assert_eq!(InterfaceName::new("eth0").map(|name| name.as_str().len()), Some(4));
/// assert!(InterfaceName::new("a-name-far-too-long").is_none());
/// assert!(InterfaceName::new("").is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct InterfaceName {
    octets: [u8; 15],
    len: u8,
}

impl InterfaceName {
    /// `name`, if it can name an interface.
    pub fn new(name: &str) -> Option<Self> {
        let valid = (1..=15).contains(&name.len())
            && !name
                .chars()
                .any(|c| c == '/' || c == '\0' || c.is_whitespace())
            && name != "."
            && name != "..";
        if !valid {
            return None;
        }
        let mut octets = [0; 15];
        octets[..name.len()].copy_from_slice(name.as_bytes());
        Some(Self {
            octets,
            len: name.len() as u8,
        })
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.octets[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl fmt::Debug for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `[gue]` table (`mode = "gue"` only): the load balancer's GUE sockets, which send the
/// encapsulated client datagrams and receive the backends' encapsulated replies.
///
/// ```
/// use qlb_lb::config::{ForwardingMode, LbConfig};
///
/// let config = LbConfig::from_toml(r#"
///     listen = ["127.0.0.1:4433"]
///     mode = "gue"
///     [health]
///     enabled = false
/// "#, ".".as_ref())?;
/// let ForwardingMode::Gue(gue) = config.mode else { panic!("gue") };
/// assert_eq!((gue.bind.to_string().as_str(), gue.ports), ("0.0.0.0:6080", 8));
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct GueConfig {
    /// The first GUE socket address: `0.0.0.0:6080` by default, `[::]:6080` when every
    /// `listen` address is IPv6. Its family is the backends' (outer headers are IPv4 or
    /// IPv6, whatever the inner ones).
    pub bind: SocketAddr,
    /// How many consecutive ports from `bind`'s each worker binds (1..=256, default 8); a
    /// client's datagrams leave from the one its address hashes to.
    pub ports: u16,
}

/// One `[[backend]]` table.
///
/// ```
/// use qlb_lb::config::LbConfig;
///
/// let config = LbConfig::from_toml(r#"
///     listen = ["127.0.0.1:4433"]
///     [[backend]]
///     name = "b1"
///     addr = "127.0.0.1:5001"
///     server_id = "01"
/// "#, ".".as_ref())?;
/// assert_eq!(config.backends[0].server_id.to_string(), "01");
/// assert_eq!(config.backends[0].weight, 1);
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BackendConfig {
    /// Unique name, used by the admin API and in metrics.
    pub name: String,
    /// Where its datagrams go: its QUIC endpoint (`proxy` mode) or the address it receives
    /// encapsulated datagrams on (`gue` mode).
    pub addr: SocketAddr,
    /// Where health checks go, when not `addr` (required in `gue` mode with health checks
    /// on: a GUE port speaks only GUE).
    pub health_addr: Option<SocketAddr>,
    /// Its server ID, the same under every `[[quic_lb]]` configuration.
    pub server_id: ServerId,
    /// Share of new connections relative to the other backends, at least 1.
    pub weight: u32,
    /// `Active`, or `Draining` (no new connections).
    pub state: BackendState,
}

impl BackendConfig {
    /// The address health checks go to: `health_addr`, else `addr`.
    ///
    /// ```
    /// use qlb_lb::config::LbConfig;
    ///
    /// let config = LbConfig::from_toml(r#"
    ///     listen = ["127.0.0.1:4433"]
    ///     [[backend]]
    ///     name = "b1"
    ///     addr = "127.0.0.1:5001"
    ///     server_id = "01"
    /// "#, ".".as_ref())?;
    /// assert_eq!(config.backends[0].health_check_addr(), config.backends[0].addr);
    /// # Ok::<(), qlb_lb::config::ConfigError>(())
    /// ```
    pub fn health_check_addr(&self) -> SocketAddr {
        self.health_addr.unwrap_or(self.addr)
    }
}

/// The `[health]` table: active HTTP/3 health checks.
///
/// ```
/// use qlb_lb::config::HealthConfig;
/// use std::time::Duration;
///
/// let health = HealthConfig::default();
/// assert_eq!((health.interval, health.unhealthy_threshold), (Duration::from_secs(1), 2));
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct HealthConfig {
    /// Off: every backend is assumed up.
    pub enabled: bool,
    /// Time between checks of one backend.
    pub interval: Duration,
    /// How long one check may take.
    pub timeout: Duration,
    /// The path of the HTTP/3 GET.
    pub path: String,
    /// Consecutive successes that make a down backend up.
    pub healthy_threshold: u32,
    /// Consecutive failures that make an up backend down.
    pub unhealthy_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            path: "/healthz".to_owned(),
            healthy_threshold: 2,
            unhealthy_threshold: 2,
        }
    }
}

/// The `[admin]` table: the HTTP admin API.
///
/// ```
/// use qlb_lb::config::LbConfig;
///
/// let config = LbConfig::from_toml(r#"
///     listen = ["127.0.0.1:4433"]
///     [admin]
/// "#, ".".as_ref())?;
/// assert_eq!(config.admin.map(|a| a.listen.to_string()), Some("127.0.0.1:9901".to_owned()));
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AdminConfig {
    /// Its TCP address.
    pub listen: SocketAddr,
    /// The bearer token requests must carry; required when `listen` is not loopback.
    pub token: Option<Secret>,
    /// Host names (lowercase, `name` or `name:port`) the API answers to besides `localhost`
    /// and IP literals: a `Host` naming anything else may be a DNS rebinding attack.
    pub allowed_hosts: Vec<String>,
}

/// The `[etcd]` table: the fleet on etcd this load balancer follows. Its members are routed
/// to beside the file's `[[backend]]` tables, which become optional (`docs/operations.md`,
/// "Fleet on etcd").
///
/// ```
/// use qlb_lb::config::LbConfig;
///
/// let config = LbConfig::from_toml(r#"
///     listen = ["127.0.0.1:4433"]
///     [etcd]
///     endpoints = ["http://127.0.0.1:2379"]
///     cluster = "edge"
///     name = "lb-1"
/// "#, ".".as_ref())?;
/// let etcd = config.etcd.expect("an [etcd] table");
/// assert_eq!((etcd.cluster.as_str(), etcd.ttl.as_secs()), ("edge", 10));
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct EtcdConfig {
    /// etcd's client URLs (`http://HOST:PORT` or `https://HOST:PORT`), tried in turn.
    pub endpoints: Vec<String>,
    /// The cluster's name: its keys are under `/qlb/<cluster>/`.
    pub cluster: String,
    /// This load balancer's name in the cluster's `lbs/` records: the host name by default.
    pub name: String,
    /// How long this load balancer's record outlives it (its lease), whole seconds.
    pub ttl: Duration,
    /// The CA certificates (PEM) etcd's certificate is checked against: required for
    /// `https://` endpoints.
    pub ca_file: Option<PathBuf>,
    /// This load balancer's certificate chain and private key (PEM), for an etcd that
    /// asks for client certificates (`--client-cert-auth`).
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The etcd user to authenticate as, and its password.
    pub user: Option<(String, Secret)>,
}

impl EtcdConfig {
    /// A client of etcd as the table says: its endpoints, TLS and user.
    pub fn client(&self) -> Result<qlb_etcd::EtcdClient, qlb_etcd::EtcdError> {
        let mut builder = qlb_etcd::EtcdClient::builder(&self.endpoints);
        if let Some(ca) = &self.ca_file {
            let identity = self
                .identity
                .as_ref()
                .map(|(c, k)| (c.as_path(), k.as_path()));
            builder = builder.tls(qlb_etcd::EtcdTls::from_pem_files(ca, identity)?);
        }
        if let Some((user, password)) = &self.user {
            let password = String::from_utf8_lossy(password.as_bytes()).into_owned();
            builder = builder.auth(qlb_etcd::EtcdAuth::new(user, password));
        }
        builder.build()
    }
}

/// A validated load balancer configuration.
///
/// ```
/// use qlb_lb::config::LbConfig;
///
/// let err = LbConfig::from_toml(r#"
///     listen = ["127.0.0.1:4433"]
///     [[quic_lb]]
///     config_id = 7
///     server_id_len = 2
///     nonce_len = 6
/// "#, ".".as_ref()).unwrap_err();
/// assert!(err.to_string().starts_with("quic_lb[0].config_id:"), "{err}");
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct LbConfig {
    /// UDP addresses to receive client datagrams on.
    pub listen: Vec<SocketAddr>,
    /// Data-plane threads.
    pub workers: NonZeroUsize,
    /// How datagrams are forwarded, with `gue` mode's `[gue]` table.
    pub mode: ForwardingMode,
    /// How long a proxy-mode flow lives without traffic.
    pub flow_idle_timeout: Duration,
    /// The most proxy-mode flows per worker.
    pub max_flows: usize,
    /// The most unconfirmed proxy-mode flows (no reply from their backend yet) per worker, at
    /// most `max_flows`.
    pub max_unconfirmed_flows: usize,
    /// The part every member of the cluster shares: `[[quic_lb]]` tables, cluster secret.
    pub cluster: ClusterConfig,
    /// The backends, in file order.
    pub backends: Vec<BackendConfig>,
    /// Health checking.
    pub health: HealthConfig,
    /// The admin API, if the file has an `[admin]` table.
    pub admin: Option<AdminConfig>,
    /// The `[retry]` table.
    pub retry: RetryConfig,
    /// The fleet on etcd to follow, if the file has an `[etcd]` table.
    pub etcd: Option<EtcdConfig>,
}

/// The part of the file every member of a cluster shares: the load balancers decode
/// connection IDs with its `[[quic_lb]]` tables, and the backends (`qlb serve`) encode them
/// with the same tables and derive their stateless-reset and token keys from its secret.
///
/// ```
/// use qlb_lb::config::ClusterConfig;
///
/// let cluster = ClusterConfig::from_toml(r#"
///     cluster_secret = "00112233445566778899aabbccddeeff"
///     [[quic_lb]]
///     config_id = 0
///     server_id_len = 2
///     nonce_len = 6
/// "#, ".".as_ref())?;
/// assert_eq!(cluster.quic_lb[0].server_id_len(), 2);
/// assert!(cluster.cluster_secret.is_some());
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
#[non_exhaustive]
pub struct ClusterConfig {
    /// The QUIC-LB configurations, one per codepoint in use, in file order.
    pub quic_lb: Vec<Config>,
    /// The secret backends derive their stateless-reset and token keys from, and load
    /// balancers the key of their fallback hash.
    pub cluster_secret: Option<Secret>,
}

/// When the load balancer answers token-less Initials with a Retry (`[retry] mode`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum RetryMode {
    /// Never (the default): every Initial is forwarded.
    #[default]
    Off,
    /// Always.
    Always,
    /// When a worker sees more than this many token-less Initials per second.
    Above(u32),
}

/// The `[retry]` table: Retry offload (`docs/retry.md`).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct RetryConfig {
    /// When Retries are sent.
    pub mode: RetryMode,
    /// How long a Retry token is accepted, whole seconds up to 15.
    pub token_lifetime: Duration,
    /// The cluster secret before a rotation, whose tokens are still accepted.
    pub previous_cluster_secret: Option<Secret>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            mode: RetryMode::Off,
            token_lifetime: Duration::from_secs(10),
            previous_cluster_secret: None,
        }
    }
}
