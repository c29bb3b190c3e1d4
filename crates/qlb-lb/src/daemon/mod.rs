//! The load balancer daemon: [`Balancer`] owns the running configuration, the data plane,
//! the health checks, the admin drains and the admin API, so that `qlb lb` and an in-process
//! demo run the same thing.
//!
//! # How state becomes routing
//!
//! Each backend's effective state is decided in one place, from three layers: down if health
//! checks get no answer from it; else draining if they find it unready (it answers but
//! fails) or an operator drained it (admin API); else the file's `state`.
//! Any change of an effective state builds a new [`Pool`](qlb_router::Pool) from the running
//! configuration and swaps it into the data plane, whose workers keep their sockets, flows
//! and tables: new connections avoid down and draining backends, while packets of
//! connections already on a draining backend keep reaching it by connection ID.
//!
//! # Reloads
//!
//! [`Balancer::reload`] re-reads the file (SIGHUP and `POST /reload` call it);
//! [`Balancer::reload_from`] takes a configuration in memory. A valid configuration swaps in
//! as one pool change: no datagram or flow is lost. An invalid one is refused with the
//! message naming the field and the running configuration stays. Settings built into sockets
//! and threads are refused by field name when they differ ([`ReloadError::NeedsRestart`]):
//! `listen`, `workers`, `mode`, `gue.bind`, `gue.ports`, `flow_idle_timeout` and
//! `admin.listen` (adding or removing the `[admin]` table included). Everything else changes live: backends, `[[quic_lb]]`
//! tables (key rotation), `[health]`, the admin token. Admin drains and health records carry
//! over for backends that keep their name (and address, for health).
//!
//! ```no_run
//! use qlb_lb::{Balancer, config::LbConfig};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = std::path::PathBuf::from("lb.toml");
//! let balancer = Balancer::start(LbConfig::from_file(&path)?, Some(path)).await?;
//! println!("listening on {:?}", balancer.listen_addrs());
//! balancer.drain("b1").await?;
//! match balancer.reload().await {
//!     Ok(report) => println!("reloaded: {report}"),
//!     Err(refused) => eprintln!("kept the running configuration: {refused}"),
//! }
//! let stats = balancer.shutdown().await?;
//! println!("{} flows in all", stats.flows_created);
//! # Ok(())
//! # }
//! ```

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use qlb_client::{Prober, ProberBuildError, Trust};
use qlb_retry::{TokenKey, TokenKeys};
use qlb_router::{BackendState, PoolError};
use qlb_xdp::AttachMode;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::admin::AdminServer;
use crate::config::{EtcdConfig, ForwardingMode, LbConfig, RetryMode, XdpAttach};
use crate::control_plane::{Addresses, ControlPlane, Running};
pub use crate::control_plane::{
    AdminOverride, BackendStatus, DropCounts, FleetStatus, FlowCounts, HealthStatus, ReloadCounts,
    ReloadError, ReloadReport, Status, TrafficCount, UnknownBackend, XdpStatus,
};
use crate::dataplane::{
    Dataplane, DataplaneError, DataplaneOptions, GueOptions, KernelPathOptions, RetryOffload,
    RetryTrigger, Stats,
};
use crate::follower::FollowerTask;
pub use crate::health::Health;
use crate::sync::lock;

/// Why the load balancer could not start.
///
/// ```
/// use qlb_lb::daemon::StartError;
///
/// let err = StartError::Admin {
///     address: "127.0.0.1:9901".parse()?,
///     source: std::io::ErrorKind::AddrInUse.into(),
/// };
/// assert!(err.to_string().starts_with("admin.listen: cannot listen on 127.0.0.1:9901"));
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration's backends do not form a valid pool.
    #[error("{0}")]
    Pool(#[from] PoolError),
    /// The data plane could not start (a listening address could not be bound, say).
    #[error("{0}")]
    Dataplane(#[from] DataplaneError),
    /// The admin API's address could not be bound.
    #[error("admin.listen: cannot listen on {address}: {source}")]
    Admin {
        /// The address.
        address: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// The health checker's sockets could not be opened.
    #[error("health checks: {0}")]
    Prober(#[from] ProberBuildError),
    /// The `[etcd]` table cannot be followed.
    #[error("etcd: {0}")]
    Etcd(String),
}

/// The running load balancer: data plane, health checks, admin API and the state behind
/// them. Clones are handles to the same balancer; it stops at [`Balancer::shutdown`], or when
/// the last handle is dropped.
///
/// Must be started and used inside a tokio runtime (multi-threaded or not): pool swaps and
/// stats wait for the data plane's workers, which these methods do on tokio's blocking
/// threads.
///
/// ```no_run
/// use qlb_lb::{Balancer, config::LbConfig};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = LbConfig::from_toml(r#"
///     listen = ["127.0.0.1:0"]
///     [[quic_lb]]
///     config_id = 0
///     server_id_len = 2
///     nonce_len = 6
///     [[backend]]
///     name = "b1"
///     addr = "127.0.0.1:5001"
///     server_id = "0001"
///     [admin]
///     listen = "127.0.0.1:0"
/// "#, ".".as_ref())?;
/// let balancer = Balancer::start(config, None).await?;
/// println!("admin API on {:?}", balancer.admin_addr());
/// let status = balancer.status().await;
/// assert_eq!(status.backends[0].name, "b1");
/// balancer.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use = "dropping the last handle stops the load balancer"]
pub struct Balancer {
    control: Arc<ControlPlane>,
    /// The admin API, stopped by `shutdown` or when the last handle drops.
    admin: Arc<Mutex<Option<AdminServer>>>,
    /// The task following the fleet on etcd, with an `[etcd]` table.
    follower: Arc<Mutex<Option<FollowerTask>>>,
}

impl Balancer {
    /// Starts the data plane on `config.listen`, the health checks (every backend is checked
    /// at once, and routed until checks fail: [`Health::Unknown`] routes like up) and, with an
    /// `[admin]` table, the admin API. `config_file` is the file
    /// [`Balancer::reload`] re-reads.
    ///
    /// ```no_run
    /// # #[tokio::main]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let path = std::path::PathBuf::from("lb.toml");
    /// let config = qlb_lb::config::LbConfig::from_file(&path)?;
    /// let balancer = qlb_lb::Balancer::start(config, Some(path)).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn start(config: LbConfig, config_file: Option<PathBuf>) -> Result<Self, StartError> {
        if config.cluster.cluster_secret.is_none() {
            tracing::warn!(
                "no cluster_secret: the fallback hash is unkeyed, so a client can choose DCIDs \
                 whose Initials all reach one backend"
            );
        }
        let config_etcd = config.etcd.clone();
        let running = Running::new(config);
        let config = running.config();
        let dataplane = Dataplane::start(
            &config.listen,
            config.workers,
            Arc::new(running.pool()?),
            dataplane_options(config),
        )?;
        let admin_listener = match &config.admin {
            Some(admin) => {
                let bind_error = |source| StartError::Admin {
                    address: admin.listen,
                    source,
                };
                let listener = TcpListener::bind(admin.listen).await.map_err(bind_error)?;
                let bound = listener.local_addr().map_err(bind_error)?;
                Some((listener, bound))
            }
            None => None,
        };
        let addresses = Addresses {
            listen: dataplane.local_addrs().to_vec(),
            gue: dataplane.gue_addrs().to_vec(),
            admin: admin_listener.as_ref().map(|(_, bound)| *bound),
            config_file,
        };
        let prober = Prober::new(&Trust::Insecure)?;
        let control = ControlPlane::start(running, dataplane, addresses, prober);
        let follower = match &config_etcd {
            Some(etcd) => Some(follow(&control, etcd).await?),
            None => None,
        };
        let admin = admin_listener
            .map(|(listener, _)| AdminServer::spawn(listener, Arc::downgrade(&control)));
        Ok(Self {
            control,
            admin: Arc::new(Mutex::new(admin)),
            follower: Arc::new(Mutex::new(follower)),
        })
    }

    /// The bound UDP addresses, in `listen` order, port 0 resolved.
    ///
    /// ```no_run
    /// # async fn show(balancer: qlb_lb::Balancer) {
    /// println!("clients send to {:?}", balancer.listen_addrs());
    /// # }
    /// ```
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.control.addresses().listen
    }

    /// The bound GUE addresses in `gue` mode, one per port, port 0 resolved (empty in
    /// `proxy` mode): backends answering through the load balancer send here.
    ///
    /// ```no_run
    /// # async fn show(balancer: qlb_lb::Balancer) {
    /// println!("backends reply to {:?}", balancer.gue_addrs());
    /// # }
    /// ```
    pub fn gue_addrs(&self) -> &[SocketAddr] {
        &self.control.addresses().gue
    }

    /// The admin API's bound address, port 0 resolved; `None` without an `[admin]` table.
    ///
    /// ```no_run
    /// # async fn show(balancer: qlb_lb::Balancer) {
    /// if let Some(addr) = balancer.admin_addr() {
    ///     println!("curl http://{addr}/status");
    /// }
    /// # }
    /// ```
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.control.addresses().admin
    }

    /// The file [`Balancer::reload`] re-reads, if any.
    ///
    /// ```no_run
    /// # async fn show(balancer: qlb_lb::Balancer) {
    /// assert!(balancer.config_file().is_some());
    /// # }
    /// ```
    pub fn config_file(&self) -> Option<&Path> {
        self.control.addresses().config_file.as_deref()
    }

    /// Re-reads the configuration file and swaps it in, or refuses it and keeps the running
    /// one (see [the module documentation](self) for what may change). Either way the
    /// outcome is logged and counted.
    ///
    /// ```no_run
    /// # async fn on_sighup(balancer: qlb_lb::Balancer) {
    /// if let Err(refused) = balancer.reload().await {
    ///     eprintln!("{refused}");
    /// }
    /// # }
    /// ```
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.control.reload().await
    }

    /// Swaps in `config`, or refuses it and keeps the running one, as [`Balancer::reload`]
    /// does with the file.
    ///
    /// ```no_run
    /// # async fn rotate(balancer: qlb_lb::Balancer, text: &str) -> Result<(), Box<dyn std::error::Error>> {
    /// let config = qlb_lb::config::LbConfig::from_toml(text, ".".as_ref())?;
    /// let report = balancer.reload_from(config).await?;
    /// println!("codepoints added: {:?}", report.quic_lb_added);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn reload_from(&self, config: LbConfig) -> Result<ReloadReport, ReloadError> {
        self.control.reload_from(config).await
    }

    /// Drains backend `name` (no new connections; its connections' packets still reach it)
    /// until [`Balancer::undrain`] or a restart; returns its effective state.
    ///
    /// ```no_run
    /// # async fn deploy(balancer: qlb_lb::Balancer) -> Result<(), qlb_lb::daemon::UnknownBackend> {
    /// use qlb_router::BackendState;
    ///
    /// assert_eq!(balancer.drain("b1").await?, BackendState::Draining);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn drain(&self, name: &str) -> Result<BackendState, UnknownBackend> {
        self.control.set_drained(name, true).await
    }

    /// Removes the admin drain of backend `name`: it goes back to the state the file gives
    /// it (a backend the file drains stays draining). Returns its effective state.
    ///
    /// ```no_run
    /// # async fn deployed(balancer: qlb_lb::Balancer) -> Result<(), qlb_lb::daemon::UnknownBackend> {
    /// balancer.undrain("b1").await?;
    /// # Ok(())
    /// # }
    /// ```
    pub async fn undrain(&self, name: &str) -> Result<BackendState, UnknownBackend> {
        self.control.set_drained(name, false).await
    }

    /// A snapshot of backends, flows and counters (what `GET /status` serves).
    ///
    /// ```no_run
    /// # async fn show(balancer: qlb_lb::Balancer) {
    /// let status = balancer.status().await;
    /// println!("{} flows", status.flows.active);
    /// # }
    /// ```
    pub async fn status(&self) -> Status {
        self.control.status().await
    }

    /// Stops the admin API (letting requests in progress finish), the health checks and the
    /// data plane, and returns the data plane's final counters. Established QUIC connections
    /// survive a restart: their next datagrams reach the new process's data plane and are
    /// routed by connection ID. Later calls return the same counters.
    ///
    /// ```no_run
    /// # async fn stop(balancer: qlb_lb::Balancer) -> Result<(), Box<dyn std::error::Error>> {
    /// let stats = balancer.shutdown().await?;
    /// println!("{} datagrams routed by CID", stats.router.routed(qlb_router::Route::Cid));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn shutdown(&self) -> Result<Stats, DataplaneError> {
        let admin = lock(&self.admin).take();
        if let Some(admin) = admin {
            admin.stop().await;
        }
        let follower = lock(&self.follower).take();
        if let Some(follower) = follower {
            follower.stop().await;
        }
        self.control.shutdown().await
    }
}

/// How long [`Balancer::start`] waits for the fleet on etcd before it returns: forwarding
/// starts with the file's backends alone when etcd is slower (or down), and the fleet is
/// applied when it comes.
const FIRST_FLEET_WAIT: Duration = Duration::from_secs(5);

/// Starts following the fleet on etcd and waits (bounded) for its first listing.
async fn follow(
    control: &Arc<ControlPlane>,
    etcd: &EtcdConfig,
) -> Result<FollowerTask, StartError> {
    let (follower, first_sync) =
        FollowerTask::spawn(control, etcd).map_err(|e| StartError::Etcd(e.to_string()))?;
    match tokio::time::timeout(FIRST_FLEET_WAIT, first_sync).await {
        Ok(_) => tracing::info!(cluster = %etcd.cluster, "following the fleet on etcd"),
        Err(_) => tracing::warn!(
            cluster = %etcd.cluster,
            "etcd has not answered within {FIRST_FLEET_WAIT:?}: forwarding to the file's \
             backends until it does"
        ),
    }
    Ok(follower)
}

/// The options [`Balancer::start`] starts the data plane with: the defaults, with the
/// settings a configuration file has (`flow_idle_timeout`, `max_flows`,
/// `max_unconfirmed_flows`, `[retry]`, `mode` and `[gue]`).
///
/// ```
/// use qlb_lb::{config::LbConfig, daemon::dataplane_options};
/// use std::time::Duration;
///
/// let config = LbConfig::from_toml(
///     "listen = [\"127.0.0.1:4433\"]\nflow_idle_timeout = \"5s\"",
///     ".".as_ref(),
/// )?;
/// let options = dataplane_options(&config);
/// assert_eq!(options.flow_idle_timeout, Duration::from_secs(5));
/// assert_eq!((options.max_flows, options.max_unconfirmed_flows), (65536, 4096));
/// assert!(options.gue.is_none());
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[must_use]
pub fn dataplane_options(config: &LbConfig) -> DataplaneOptions {
    DataplaneOptions {
        flow_idle_timeout: config.flow_idle_timeout,
        max_flows: config.max_flows,
        max_unconfirmed_flows: config.max_unconfirmed_flows,
        retry: retry_offload(config),
        gue: config.mode.gue().map(|gue| GueOptions {
            bind: gue.bind,
            ports: gue.ports,
        }),
        xdp: match config.mode {
            ForwardingMode::Xdp(xdp) => Some(KernelPathOptions {
                interface: xdp.interface.to_string(),
                attach: match xdp.attach {
                    XdpAttach::Native => AttachMode::Native,
                    XdpAttach::Generic => AttachMode::Generic,
                    _ => AttachMode::Auto,
                },
            }),
            _ => None,
        },
        ..DataplaneOptions::default()
    }
}

/// Retry offload as `[retry]` says, under the cluster secret's token key; Retry SCIDs use the
/// last `[[quic_lb]]` table (the one a rotation adds). Validation made sure both exist.
fn retry_offload(config: &LbConfig) -> Option<RetryOffload> {
    let trigger = match config.retry.mode {
        RetryMode::Off => return None,
        RetryMode::Always => RetryTrigger::Always,
        RetryMode::Above(threshold) => RetryTrigger::Above(threshold),
    };
    let secret = config.cluster.cluster_secret.as_ref()?;
    let previous = config.retry.previous_cluster_secret.as_ref();
    Some(RetryOffload {
        trigger,
        keys: Arc::new(TokenKeys::new(
            TokenKey::from_cluster_secret(secret.as_bytes()),
            previous.map(|p| TokenKey::from_cluster_secret(p.as_bytes())),
            config.retry.token_lifetime.as_secs(),
        )),
        config_id: config.cluster.quic_lb.last()?.id(),
    })
}
