//! Assembling a server: QUIC-LB CID generator, cluster keys, TLS, lifecycle limits,
//! sockets (plain, and GUE when asked for).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use quic_lb::{Config, ServerId};

use crate::Metrics;
use crate::cid_generator::QuicLbCidGenerator;
use crate::connection::ConnectionSettings;
use crate::error::BuildError;
use crate::gue::{GueReturn, GueSocket};
use crate::keys::ClusterKeys;
use crate::lifecycle::ConnectionLimits;
use crate::load::LoadReporter;
use crate::server::Server;
use crate::stamp::Stamp;
use crate::tls::Identity;

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
    identity: Option<Identity>,
    limits: ConnectionLimits,
    gue: Option<(SocketAddr, GueReturn)>,
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
            identity: None,
            limits: ConnectionLimits::default(),
            gue: None,
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

    /// The cluster secret, from which the stateless-reset key and the token key are derived
    /// (HKDF-SHA256), so that the servers of a cluster can reset one another's dead
    /// connections. Only the derived keys are kept. Without it, keys are random per process.
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
    /// Anyone who can reach `addr` can claim any client address: let only the load
    /// balancers reach it (firewall), as with the kernel's `fou`.
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
            Arc::new(identity.quic_server_config()?),
            Arc::new(keys.token),
        );
        // A server that refuses migration drops packets from a client's new address
        // (DESIGN.md section 2); migration is quinn's default, stated here because it matters.
        server_config.migration(true);

        let bind_error = |source| BuildError::Bind { addr, source };
        let socket = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
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
                let socket =
                    GueSocket::new(socket, gue, ret, metrics.clone()).map_err(gue_error)?;
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
