//! The running server: accept connections, serve them with a tower service, shut down
//! gracefully.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quic_lb::{Config, ServerId};
use tokio::sync::watch;

use crate::builder::ServerBuilder;
use crate::cid_generator::IssuingConfig;
use crate::connection::{ConnectionSettings, H3_NO_ERROR, serve_connection};
use crate::drain::{self, DrainSender, DrainState};
use crate::error::BuildError;
use crate::{HttpService, Metrics, ResponseBody};

/// After the shutdown deadline, how long connection tasks get to notice and close before the
/// endpoint closes whatever is left.
const DEADLINE_MARGIN: Duration = Duration::from_millis(100);
/// How long to wait for closed connections to deliver their CONNECTION_CLOSE.
const WAIT_IDLE_LIMIT: Duration = Duration::from_secs(1);

/// An HTTP/3 server whose connection IDs route back to it through a QUIC-LB load balancer.
///
/// Clones are handles to the same server: one task runs [`Server::serve`], another calls
/// [`Server::shutdown`].
#[derive(Clone, Debug)]
pub struct Server {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    endpoint: quinn::Endpoint,
    /// The GUE socket's address, in GUE mode.
    gue_addr: Option<SocketAddr>,
    issuing: IssuingConfig,
    settings: Arc<ConnectionSettings>,
    drain: DrainSender,
    /// Connection tasks running (handshaking or established).
    connections: watch::Sender<usize>,
    /// Set once a shutdown has closed the endpoint.
    stopped: watch::Sender<bool>,
}

impl Server {
    /// Starts configuring a server that issues CIDs under `config` for `server_id`.
    ///
    /// ```
    /// use quic_lb::{Config, ConfigId};
    ///
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let builder = qlb_server::Server::builder(config, "0001".parse()?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(config: Config, server_id: ServerId) -> ServerBuilder {
        ServerBuilder::new(config, server_id)
    }

    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        gue_addr: Option<SocketAddr>,
        issuing: IssuingConfig,
        settings: ConnectionSettings,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                endpoint,
                gue_addr,
                issuing,
                settings: Arc::new(settings),
                drain: watch::Sender::new(None),
                connections: watch::Sender::new(0),
                stopped: watch::Sender::new(false),
            }),
        }
    }

    /// The UDP address the server listens on (the plain socket, in GUE mode too).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let server = qlb_server::Server::builder(config, "0001".parse()?).bind("127.0.0.1:0".parse()?)?;
    /// assert!(server.local_addr()?.ip().is_loopback());
    /// # Ok(())
    /// # }
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    /// The UDP address the server receives GUE-encapsulated datagrams on, if it was built
    /// with [`ServerBuilder::gue`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let server = qlb_server::Server::builder(config, "0001".parse()?).bind("127.0.0.1:0".parse()?)?;
    /// assert_eq!(server.gue_addr(), None);
    /// # Ok(())
    /// # }
    /// ```
    pub fn gue_addr(&self) -> Option<SocketAddr> {
        self.shared.gue_addr
    }

    /// This server's QUIC-LB server ID.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let server = qlb_server::Server::builder(config, "0001".parse()?).bind("127.0.0.1:0".parse()?)?;
    /// assert_eq!(server.server_id().to_string(), "0001");
    /// # Ok(())
    /// # }
    /// ```
    pub fn server_id(&self) -> &ServerId {
        &self.shared.settings.server_id
    }

    /// The QUIC-LB configuration new CIDs are issued under.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let server = qlb_server::Server::builder(config.clone(), "0001".parse()?).bind("127.0.0.1:0".parse()?)?;
    /// assert_eq!(server.config(), config);
    /// # Ok(())
    /// # }
    /// ```
    pub fn config(&self) -> Config {
        self.shared.issuing.current()
    }

    /// Rotates the QUIC-LB configuration live: every CID issued from now on (new connections,
    /// NEW_CONNECTION_ID frames) is under `config`, with a fresh nonce counter. Connections keep
    /// the CIDs they hold, so the load balancers must decode both codepoints until those
    /// connections are gone (see `docs/operations.md`).
    ///
    /// `config` must be at another codepoint and give CIDs of the same length, since the
    /// endpoint parses every short header with one CID length.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use quic_lb::{Config, ConfigId, Key};
    ///
    /// let old = Config::new(ConfigId::new(0)?, 2, 6, Some(Key::random()))?;
    /// let server = qlb_server::Server::builder(old, "0001".parse()?).bind("127.0.0.1:0".parse()?)?;
    ///
    /// let new = Config::new(ConfigId::new(1)?, 2, 6, Some(Key::random()))?;
    /// server.rotate_config(new)?;
    /// assert_eq!(server.config().id().get(), 1);
    ///
    /// // Other CID lengths are refused.
    /// let longer = Config::new(ConfigId::new(2)?, 2, 8, None)?;
    /// assert!(server.rotate_config(longer).is_err());
    /// # Ok(())
    /// # }
    /// ```
    pub fn rotate_config(&self, config: Config) -> Result<(), BuildError> {
        let id = config.id().get();
        self.shared.issuing.rotate(config)?;
        tracing::info!(config_id = id, "QUIC-LB configuration rotated");
        Ok(())
    }

    /// The server's metrics; register them in a Prometheus registry to expose them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let server = qlb_server::Server::builder(config, "0001".parse()?).bind("127.0.0.1:0".parse()?)?;
    /// let mut registry = prometheus_client::registry::Registry::default();
    /// server.metrics().register(&mut registry);
    /// # Ok(())
    /// # }
    /// ```
    pub fn metrics(&self) -> &Metrics {
        &self.shared.settings.metrics
    }

    /// Whether the server is draining; `/healthz` of [`builtin_routes`](crate::builtin_routes)
    /// reads it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let server = qlb_server::Server::builder(config, "0001".parse()?).bind("127.0.0.1:0".parse()?)?;
    /// assert!(!server.drain_state().is_draining());
    /// # Ok(())
    /// # }
    /// ```
    pub fn drain_state(&self) -> DrainState {
        DrainState::new(self.shared.drain.subscribe())
    }

    /// Accepts connections and serves every request with `service`, until a
    /// [`shutdown`](Server::shutdown) has finished. Each request carries a
    /// [`ConnectionInfo`](crate::ConnectionInfo) in its extensions; its body streams in as
    /// the client sends it, and the response body streams out as the service yields it.
    ///
    /// While draining, new connection attempts are refused (CONNECTION_REFUSED).
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use quic_lb::{Config, ConfigId};
    ///
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let server = qlb_server::Server::builder(config, "0001".parse()?).bind("[::]:443".parse()?)?;
    /// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hello\n" }));
    /// server.serve(app).await;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn serve<S, B>(&self, service: S)
    where
        S: HttpService<B>,
        B: ResponseBody,
    {
        let shared = &self.shared;
        while let Some(incoming) = shared.endpoint.accept().await {
            if shared.drain.borrow().is_some() {
                shared.settings.metrics.connection_refused();
                incoming.refuse();
                continue;
            }
            let tracked = ConnectionTracked::new(&shared.connections);
            let settings = shared.settings.clone();
            let drain = shared.drain.subscribe();
            let service = service.clone();
            tokio::spawn(async move {
                serve_connection(incoming, settings, drain, service).await;
                drop(tracked);
            });
        }
        // The endpoint closes only at the end of a shutdown (or if its socket failed): wait
        // for the shutdown to finish, so that returning means "all done".
        if shared.drain.borrow().is_some() {
            let _ = shared
                .stopped
                .subscribe()
                .wait_for(|stopped| *stopped)
                .await;
        }
    }

    /// Shuts down gracefully, closing everything `timeout` from now at the latest: refuses
    /// new connections, turns `/healthz` to 503, sends the two-phase GOAWAY on every
    /// connection, lets in-flight requests finish, rejects later ones with
    /// H3_REQUEST_REJECTED, and closes each connection with H3_NO_ERROR when it is idle or
    /// at the deadline. Returns when every connection is closed; [`Server::serve`] returns
    /// too. Calling it again only moves the deadline earlier.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let server = qlb_server::Server::builder(config, "0001".parse()?).bind("127.0.0.1:0".parse()?)?;
    /// let serving = tokio::spawn({
    ///     let server = server.clone();
    ///     async move { server.serve(qlb_server::builtin_routes(server.drain_state())).await }
    /// });
    /// server.shutdown(std::time::Duration::from_secs(10)).await;
    /// serving.await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self, timeout: Duration) {
        let shared = &self.shared;
        let deadline = Instant::now() + timeout;
        let first = shared.drain.borrow().is_none();
        if drain::begin(&shared.drain, deadline) {
            if first {
                tracing::info!(
                    ?timeout,
                    "draining: refusing new connections, sending GOAWAY"
                );
            } else {
                tracing::info!(?timeout, "shutdown deadline moved earlier");
            }
        }
        let mut connections = shared.connections.subscribe();
        let all_closed = tokio::time::timeout_at(
            (deadline + DEADLINE_MARGIN).into(),
            connections.wait_for(|running| *running == 0),
        )
        .await
        .is_ok_and(|waited| waited.is_ok());
        if !all_closed {
            tracing::warn!("connections still open after the shutdown deadline: closing them");
        }
        shared.endpoint.close(H3_NO_ERROR, b"");
        let _ = tokio::time::timeout(WAIT_IDLE_LIMIT, shared.endpoint.wait_idle()).await;
        shared.stopped.send_replace(true);
    }
}

/// Holds one place in the count of running connection tasks.
struct ConnectionTracked(watch::Sender<usize>);

impl ConnectionTracked {
    fn new(count: &watch::Sender<usize>) -> Self {
        count.send_modify(|running| *running += 1);
        Self(count.clone())
    }
}

impl Drop for ConnectionTracked {
    fn drop(&mut self) {
        self.0.send_modify(|running| *running -= 1);
    }
}
