//! Assembling a server: QUIC-LB CID generator, cluster keys, TLS, lifecycle limits,
//! sockets (plain, and GUE when asked for).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use quic_lb::{Config, ServerId};

use crate::cid_generator::QuicLbCidGenerator;
use crate::connection::ConnectionSettings;
use crate::early::{EarlySettings, ReplaySafe};
use crate::error::BuildError;
use crate::gue::{GueReturn, GueSocket, GueSource, GueSources};
use crate::keys::ClusterKeys;
use crate::lifecycle::ConnectionLimits;
use crate::load::LoadReporter;
use crate::server::Server;
use crate::stamp::Stamp;
use crate::tickets::{DEFAULT_PERIOD, Ticketer};
use crate::tls::{Identity, Tickets};
use crate::{EarlyDataPolicy, Metrics};

/// Configures a [`Server`]; made by [`Server::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use qlb_server::{Identity, Server};
/// use quic_lb::{Config, ConfigId, Key};
///
/// let config = Config::new(ConfigId::new(1)?, 2, 6, Some(Key::random()))?;
/// let server = Server::builder(config, "0a01".parse()?)
///     .name("backend-a")
///     .cluster_secret(b"shared by every server and load balancer of the cluster")
///     .identity(Identity::self_signed(&["localhost"])?)
///     .max_connection_age(Duration::from_secs(300))
///     .max_connection_age_grace(Duration::from_secs(30))
///     .max_connection_idle(Duration::from_secs(120))
///     .bind("127.0.0.1:0".parse()?)?;
/// assert_ne!(server.local_addr()?.port(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a builder does nothing until `bind`"]
pub struct ServerBuilder {
    config: Config,
    server_id: ServerId,
    name: Option<String>,
    keys: Option<ClusterKeys>,
    /// The cluster secret's ticket keys; the period is applied at `bind`.
    ticket_secret: Option<TicketSecret>,
    ticket_period: Duration,
    zero_rtt: Option<bool>,
    early: EarlySettings,
    identity: Option<Identity>,
    limits: ConnectionLimits,
    gue: Option<(SocketAddr, GueReturn)>,
    gue_sources: Vec<GueSource>,
    preferred_address: Option<SocketAddr>,
    load_reports: bool,
    server_id_header: bool,
}

impl ServerBuilder {
    pub(crate) fn new(config: Config, server_id: ServerId) -> Self {
        Self {
            config,
            server_id,
            name: None,
            keys: None,
            ticket_secret: None,
            ticket_period: DEFAULT_PERIOD,
            zero_rtt: None,
            early: EarlySettings::default(),
            identity: None,
            limits: ConnectionLimits::default(),
            gue: None,
            gue_sources: Vec::new(),
            preferred_address: None,
            load_reports: true,
            server_id_header: true,
        }
    }

    /// Whether every response carries the server's load report in the
    /// [`LOAD_HEADER`](crate::LOAD_HEADER) field (`utilization=0.42, qps=812.5, eps=0.5,
    /// in-flight=3`: process CPU share and rates over the last second, requests in flight),
    /// for clients that weigh backends by it. A handler may set the field itself, with its
    /// own utilisation measure; it is then sent as set. Default on.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?).load_reports(false);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn load_reports(mut self, on: bool) -> Self {
        self.load_reports = on;
        self
    }

    /// Whether every response names this server in the
    /// [`SERVER_ID_HEADER`](crate::SERVER_ID_HEADER) field (its QUIC-LB server ID), so that
    /// a client behind a load balancer can tell its connections' backends apart (qlb-client's
    /// distinct-backends mode). Default on; turn it off where clients must not learn the
    /// fleet's server IDs.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?).server_id_header(false);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn server_id_header(mut self, on: bool) -> Self {
        self.server_id_header = on;
        self
    }

    /// The server's name, reported by `/whoami` and in [`ConnectionInfo`](crate::ConnectionInfo).
    /// Defaults to `qlb-<server id>`.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?).name("a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The cluster secret, from which the stateless-reset key, the token key and the session
    /// ticket keys are derived (HKDF-SHA256), so that the servers of a cluster can reset one
    /// another's dead connections and resume one another's sessions (with 0-RTT, on by
    /// default with a secret: see [`zero_rtt`](Self::zero_rtt)). The derived keys are kept,
    /// and a copy of the secret from which each rotation period's ticket key derives; none
    /// of them shows in `Debug`. Without it, keys are random per process.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?).cluster_secret(b"s3cret");
    /// assert!(!format!("{builder:?}").contains("s3cret"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn cluster_secret(mut self, secret: &[u8]) -> Self {
        self.keys = Some(ClusterKeys::derive(secret));
        self.ticket_secret = Some(TicketSecret(secret.to_vec()));
        self
    }

    /// Accept 0-RTT early data from resuming clients. On by default when a
    /// [`cluster_secret`](Self::cluster_secret) is set (every server then reads every
    /// ticket), off without one. Session tickets are issued either way; off, resumed
    /// clients only skip the certificate, not the round trip.
    ///
    /// Early data can be replayed (see `docs/operations.md`, "0-RTT and replay"): only
    /// requests safe to replay are served from it, the others as
    /// [`early_data_policy`](Self::early_data_policy) says.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?)
    ///     .cluster_secret(b"s3cret")
    ///     .zero_rtt(false);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn zero_rtt(mut self, on: bool) -> Self {
        self.zero_rtt = Some(on);
        self
    }

    /// How often the session ticket key rotates; tickets stay valid from their period into
    /// the next (so between one and two periods), and clients are told the period as their
    /// lifetime. At least a second, at most a week; 12 hours by default. Every server of a
    /// cluster must use the same period (and synchronised clocks) to read one another's
    /// tickets.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// # use std::time::Duration;
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?)
    ///     .ticket_period(Duration::from_secs(3600));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ticket_period(mut self, period: Duration) -> Self {
        self.ticket_period = period;
        self
    }

    /// What to do with early requests that are not safe to replay: answer `425 Too Early`
    /// (the default) or hold them until the handshake completes.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// use qlb_server::EarlyDataPolicy;
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?)
    ///     .early_data_policy(EarlyDataPolicy::Hold);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn early_data_policy(mut self, policy: EarlyDataPolicy) -> Self {
        self.early.policy = policy;
        self
    }

    /// Marks more requests as safe to serve from early data than GET, HEAD and OPTIONS:
    /// those for which `rule(method, uri)` is true. Only mark requests whose replay does no
    /// harm (idempotent, no side effect an attacker could repeat).
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?)
    ///     .replay_safe(|method, uri| method == http::Method::PUT && uri.path().starts_with("/cache/"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn replay_safe<F>(mut self, rule: F) -> Self
    where
        F: Fn(&http::Method, &http::Uri) -> bool + Send + Sync + 'static,
    {
        self.early.replay_safe = Some(ReplaySafe(Arc::new(rule)));
        self
    }

    /// The TLS certificate and key. Defaults to a fresh self-signed certificate for `localhost`.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let identity = qlb_server::Identity::self_signed(&["backend.internal"])?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?).identity(identity);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn identity(mut self, identity: Identity) -> Self {
        self.identity = Some(identity);
        self
    }

    /// Drain a connection (two-phase GOAWAY) once it is this old, +-10% random jitter.
    /// Off by default.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// # use std::time::Duration;
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?)
    ///     .max_connection_age(Duration::from_secs(600));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.limits.max_age = Some(age);
        self
    }

    /// After the max-age GOAWAY, close the connection this much later even if requests are
    /// still in flight. Off by default: they may run as long as they need.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// # use std::time::Duration;
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?)
    ///     .max_connection_age(Duration::from_secs(600))
    ///     .max_connection_age_grace(Duration::from_secs(60));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_connection_age_grace(mut self, grace: Duration) -> Self {
        self.limits.max_age_grace = Some(grace);
        self
    }

    /// Drain a connection (two-phase GOAWAY, then close) after this long without a request
    /// in flight. Off by default; QUIC's own idle timeout (30 s, silent) still applies.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// # use std::time::Duration;
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?)
    ///     .max_connection_idle(Duration::from_secs(20));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn max_connection_idle(mut self, idle: Duration) -> Self {
        self.limits.max_idle = Some(idle);
        self
    }

    /// Also receive datagrams encapsulated by a load balancer in GUE mode, on `addr`, and
    /// answer their clients as `ret` says. [`bind`](Self::bind) then binds both sockets on
    /// one QUIC endpoint: the plain one keeps serving health checks and direct clients.
    ///
    /// A GUE datagram (GUE header, inner IP and UDP headers, the QUIC datagram) is
    /// decapsulated before QUIC sees it, so connections see the client's real address (the
    /// inner source) and the VIP it sent to (the inner destination); `/whoami` reports that
    /// address, and a client that migrates is seen to migrate. Datagrams that are not GUE
    /// are dropped and counted (`qlb_server_gue_dropped_total`).
    ///
    /// Anyone who can reach `addr` can claim any client address: name the load balancers
    /// with [`gue_sources`](Self::gue_sources), or let only them reach it (firewall), as
    /// with the kernel's `fou`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use qlb_server::{GueReturn, Server};
    /// use quic_lb::{Config, ConfigId};
    ///
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let server = Server::builder(config, "0001".parse()?)
    ///     .gue("127.0.0.1:0".parse()?, GueReturn::ThroughLoadBalancer)
    ///     .bind("127.0.0.1:0".parse()?)?;
    /// let gue = server.gue_addr().expect("GUE mode");
    /// assert_ne!(gue, server.local_addr()?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn gue(mut self, addr: SocketAddr, ret: GueReturn) -> Self {
        self.gue = Some((addr, ret));
        self
    }

    /// Accept GUE datagrams only from these networks (the load balancers'); others are
    /// dropped before they are decapsulated and counted (`qlb_server_gue_dropped_total
    /// {reason="source"}`). Without any, every source is accepted and the server says so
    /// in its log. Each call adds to the list.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// use qlb_server::{GueReturn, Server};
    ///
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = Server::builder(config, "0001".parse()?)
    ///     .gue("10.0.0.5:6080".parse()?, GueReturn::Direct)
    ///     .gue_sources(["10.0.0.0/29".parse()?, "2001:db8::7".parse()?]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gue_sources(mut self, sources: impl IntoIterator<Item = GueSource>) -> Self {
        self.gue_sources.extend(sources);
        self
    }

    /// Advertise `addr` as the server's preferred address (RFC 9000 section 9.6): a client
    /// that supports it moves there once the handshake is confirmed, so a load balancer in
    /// front carries only the handshake. `addr` must reach this server directly (its own
    /// unicast address); port 0 means the port the server binds. The preferred address's
    /// connection ID comes from the QUIC-LB generator like every other, so packets that still
    /// cross the load balancer keep reaching this server. Refused at [`bind`](Self::bind)
    /// when the address is unspecified or multicast. Clients that ignore it (quinn's,
    /// qlb-client's) keep talking through the load balancer.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use quic_lb::{Config, ConfigId};
    ///
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let server = qlb_server::Server::builder(config.clone(), "0001".parse()?)
    ///     .preferred_address("127.0.0.1:0".parse()?) // this server's own port
    ///     .bind("127.0.0.1:0".parse()?)?;
    /// let nowhere = qlb_server::Server::builder(config, "0001".parse()?)
    ///     .preferred_address("0.0.0.0:443".parse()?)
    ///     .bind("127.0.0.1:0".parse()?);
    /// assert!(nowhere.err().is_some_and(|e| e.to_string().contains("preferred_address")));
    /// # drop(server);
    /// # Ok(())
    /// # }
    /// ```
    pub fn preferred_address(mut self, addr: SocketAddr) -> Self {
        self.preferred_address = Some(addr);
        self
    }

    /// Binds the UDP socket (and the GUE socket, after [`gue`](Self::gue)) and starts the
    /// QUIC endpoint; call [`Server::serve`] next. Must run inside a tokio runtime.
    ///
    /// Refuses a server ID that does not fit the configuration, configurations whose CIDs
    /// are shorter than 8 octets, unusable TLS material, and lifecycle limits past their
    /// maximum (a year for the age and its grace, a day for idle).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use quic_lb::{Config, ConfigId};
    ///
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let wrong_length = qlb_server::Server::builder(config, "01".parse()?)
    ///     .bind("127.0.0.1:0".parse()?);
    /// assert!(wrong_length.is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn bind(self, addr: SocketAddr) -> Result<Server, BuildError> {
        self.limits.validate()?;
        if !(MIN_TICKET_PERIOD..=MAX_TICKET_PERIOD).contains(&self.ticket_period) {
            return Err(BuildError::TicketPeriod(self.ticket_period));
        }
        let zero_rtt = self.zero_rtt.unwrap_or(self.ticket_secret.is_some());
        let ticketer: Arc<dyn rustls::server::ProducesTickets> = match &self.ticket_secret {
            Some(secret) => {
                tracing::info!(
                    "session tickets sealed under the cluster's ticket key: clients resume on \
                     every server of the cluster"
                );
                Arc::new(Ticketer::from_cluster_secret(&secret.0, self.ticket_period))
            }
            None => {
                tracing::warn!(
                    "no cluster secret: session tickets are sealed under a random key of this \
                     process, so clients resume only on this server"
                );
                Arc::new(Ticketer::random(self.ticket_period))
            }
        };
        match zero_rtt {
            true => tracing::info!(
                "0-RTT on: early requests safe to replay are served at once, others get 425 or \
                 wait for the handshake"
            ),
            false => tracing::info!("0-RTT off: resuming clients' early data is refused"),
        }
        let tickets = Tickets {
            ticketer,
            early_data: zero_rtt,
        };
        let metrics = Metrics::default();
        let generator = QuicLbCidGenerator::new(self.config, self.server_id)?
            .with_counters(metrics.cid_counters());
        let issuing = generator.issuing();
        let keys = self.keys.unwrap_or_else(|| {
            tracing::warn!(
                "no cluster secret: stateless-reset and token keys are random, so other servers \
                 cannot reset this server's connections after it dies"
            );
            ClusterKeys::random()
        });
        let identity = match self.identity {
            Some(identity) => identity,
            None => Identity::self_signed(&["localhost"])?,
        };

        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(keys.reset));
        endpoint_config.cid_generator(move || Box::new(generator.fresh()));
        let mut server_config = quinn::ServerConfig::new(
            Arc::new(identity.quic_server_config(tickets)?),
            Arc::new(keys.token),
        );
        // A server that refuses migration drops packets from a client's new address
        // (DESIGN.md section 2); migration is quinn's default, stated here because it matters.
        server_config.migration(true);

        let bind_error = |source| BuildError::Bind { addr, source };
        let socket = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
        if let Some(preferred) = self.preferred_address {
            let port = socket.local_addr().map_err(bind_error)?.port();
            advertise(&mut server_config, preferred, port)?;
        }
        let runtime = Arc::new(quinn::TokioRuntime);
        let (endpoint, gue_addr) = match self.gue {
            None => (
                quinn::Endpoint::new(endpoint_config, Some(server_config), socket, runtime)
                    .map_err(bind_error)?,
                None,
            ),
            Some((gue_addr, ret)) => {
                let gue_error = |source| BuildError::Bind {
                    addr: gue_addr,
                    source,
                };
                let gue = std::net::UdpSocket::bind(gue_addr).map_err(gue_error)?;
                let sources = GueSources::new(self.gue_sources);
                if sources.is_open() {
                    tracing::warn!(
                        "GUE accepted from any source: whoever reaches {gue_addr} can claim any \
                         client address; name the load balancers (gue_sources) or firewall it"
                    );
                }
                let socket = GueSocket::new(socket, gue, ret, sources, metrics.clone())
                    .map_err(gue_error)?;
                let bound = socket.gue_addr().map_err(gue_error)?;
                let endpoint = quinn::Endpoint::new_with_abstract_socket(
                    endpoint_config,
                    Some(server_config),
                    Arc::new(socket),
                    runtime,
                )
                .map_err(bind_error)?;
                (endpoint, Some(bound))
            }
        };
        let server_name = self
            .name
            .unwrap_or_else(|| format!("qlb-{}", self.server_id));
        Ok(Server::new(
            endpoint,
            gue_addr,
            issuing,
            ConnectionSettings {
                server_id: self.server_id,
                server_name: server_name.into(),
                limits: self.limits,
                zero_rtt,
                early: self.early,
                metrics,
                stamp: Arc::new(Stamp {
                    server_id: self
                        .server_id_header
                        .then(|| HeaderValue::try_from(self.server_id.to_string()).ok())
                        .flatten(),
                    load: self.load_reports.then(LoadReporter::default),
                }),
            },
        ))
    }
}

/// The shortest ticket key rotation period.
const MIN_TICKET_PERIOD: Duration = Duration::from_secs(1);
/// The longest: RFC 8446 section 4.6.1 caps ticket lifetimes at seven days.
const MAX_TICKET_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

/// The cluster secret, kept for the ticket keys of future periods; `Debug` never shows it.
struct TicketSecret(Vec<u8>);

impl std::fmt::Debug for TicketSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketSecret(..)")
    }
}

/// Sets `preferred` as `config`'s preferred address, port 0 meaning `bound_port`; refuses
/// an address no client could reach.
fn advertise(
    config: &mut quinn::ServerConfig,
    preferred: SocketAddr,
    bound_port: u16,
) -> Result<(), BuildError> {
    if preferred.ip().is_unspecified() || preferred.ip().is_multicast() {
        return Err(BuildError::PreferredAddress(preferred));
    }
    let port = match preferred.port() {
        0 => bound_port,
        port => port,
    };
    match SocketAddr::new(preferred.ip(), port) {
        SocketAddr::V4(v4) => config.preferred_address_v4(Some(v4)),
        SocketAddr::V6(v6) => config.preferred_address_v6(Some(v6)),
    };
    Ok(())
}
