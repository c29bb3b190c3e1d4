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
//! `listen`, `workers`, `mode`, `flow_idle_timeout` and `admin.listen` (adding or removing
//! the `[admin]` table included). Everything else changes live: backends, `[[quic_lb]]`
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

mod reload;
mod state;
mod status;

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use qlb_client::{Prober, ProberError, Trust};
use qlb_router::{BackendState, PoolError};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use crate::admin::AdminServer;
use crate::config::{ConfigError, LbConfig, Secret};
use crate::dataplane::{Dataplane, DataplaneError, DataplaneHandle, DataplaneOptions, Stats};
use crate::health::{self, Health, Outcome};
pub use reload::{ReloadError, ReloadReport};
use state::State;
pub use state::{AdminOverride, UnknownBackend};
use status::Place;
pub use status::{
    BackendStatus, DropCounts, FlowCounts, HealthStatus, ReloadCounts, Status, TrafficCount,
};

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
    Prober(#[from] ProberError),
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
pub struct Balancer {
    shared: Arc<Shared>,
}

/// What every handle, the health checks and the admin API share. Background tasks hold it
/// weakly, so dropping the last [`Balancer`] stops everything.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// The running health check tasks (locked after `state` when both are).
    checks: Mutex<Vec<AbortHandle>>,
    /// The admin API's token, apart from `state` so that authorizing a request never waits
    /// for a pool swap.
    admin_token: Mutex<Option<Secret>>,
    handle: DataplaneHandle,
    /// Taken by `shutdown`.
    dataplane: Mutex<Option<Dataplane>>,
    admin: Mutex<Option<AdminServer>>,
    place: Place,
    runtime: Handle,
    prober: Arc<Prober>,
}

impl Balancer {
    /// Starts the data plane on `config.listen`, the health checks (every backend is checked
    /// at once, and routed until a check fails: see [`HealthTracker`](crate::health::HealthTracker))
    /// and, with an `[admin]` table, the admin API. `config_file` is the file
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
        let state = State::new(config);
        let config = state.config();
        let dataplane = Dataplane::start(
            &config.listen,
            config.workers,
            Arc::new(state.pool()?),
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
        let shared = Arc::new(Shared {
            admin_token: Mutex::new(config.admin.as_ref().and_then(|a| a.token.clone())),
            handle: dataplane.handle(),
            place: Place {
                listen: dataplane.local_addrs().to_vec(),
                admin: admin_listener.as_ref().map(|(_, bound)| *bound),
                config_file,
            },
            dataplane: Mutex::new(Some(dataplane)),
            admin: Mutex::new(None),
            checks: Mutex::new(Vec::new()),
            runtime: Handle::current(),
            prober: Arc::new(Prober::new(&Trust::Insecure)?),
            state: Mutex::new(state),
        });
        shared.restart_checks(&lock(&shared.state));
        if let Some((listener, _)) = admin_listener {
            *lock(&shared.admin) = Some(AdminServer::spawn(listener, Arc::downgrade(&shared)));
        }
        Ok(Self { shared })
    }

    pub(crate) fn from_shared(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The bound UDP addresses, in `listen` order, port 0 resolved.
    ///
    /// ```no_run
    /// # async fn show(balancer: qlb_lb::Balancer) {
    /// println!("clients send to {:?}", balancer.listen_addrs());
    /// # }
    /// ```
    pub fn listen_addrs(&self) -> &[SocketAddr] {
        &self.shared.place.listen
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
        self.shared.place.admin
    }

    /// The file [`Balancer::reload`] re-reads, if any.
    ///
    /// ```no_run
    /// # async fn show(balancer: qlb_lb::Balancer) {
    /// assert!(balancer.config_file().is_some());
    /// # }
    /// ```
    pub fn config_file(&self) -> Option<&Path> {
        self.shared.place.config_file.as_deref()
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
        let Some(path) = self.shared.place.config_file.clone() else {
            return Err(ReloadError::NoConfigFile);
        };
        self.blocking(move |shared| shared.reload(LbConfig::from_file(&path)))
            .await
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
        self.blocking(move |shared| shared.reload(Ok(config))).await
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
        let name = name.to_owned();
        self.blocking(move |shared| shared.set_drained(&name, true))
            .await
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
        let name = name.to_owned();
        self.blocking(move |shared| shared.set_drained(&name, false))
            .await
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
        self.blocking(|shared| shared.status()).await
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
        let admin = lock(&self.shared.admin).take();
        if let Some(admin) = admin {
            admin.stop().await;
        }
        self.blocking(|shared| {
            lock(&shared.state).stop();
            lock(&shared.checks).drain(..).for_each(|c| c.abort());
            let dataplane = lock(&shared.dataplane).take();
            match dataplane {
                Some(dataplane) => dataplane.shutdown(),
                None => Ok(shared.handle.stats()),
            }
        })
        .await
    }

    /// The admin API's token, if one is configured.
    pub(crate) fn admin_token(&self) -> Option<Secret> {
        lock(&self.shared.admin_token).clone()
    }

    /// Runs `work` on a blocking thread: pool swaps and stats wait for the data plane.
    async fn blocking<R: Send + 'static>(
        &self,
        work: impl FnOnce(&Arc<Shared>) -> R + Send + 'static,
    ) -> R {
        let shared = Arc::clone(&self.shared);
        match tokio::task::spawn_blocking(move || work(&shared)).await {
            Ok(result) => result,
            // A panic in `work` is a bug: let it reach the caller.
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Blocking tasks are only cancelled when the runtime shuts down, which drops
            // this future first.
            Err(err) => panic!("the runtime is shutting down: {err}"),
        }
    }
}

impl Shared {
    /// Swaps in the pool for `state`.
    fn apply(&self, state: &State) {
        match state.pool() {
            Ok(pool) => self.handle.set_pool(Arc::new(pool)),
            // The configuration's pool was built once already; states do not make it invalid.
            Err(err) => tracing::error!(%err, "cannot build the routing pool; keeping the last"),
        }
    }

    fn set_drained(&self, name: &str, drained: bool) -> Result<BackendState, UnknownBackend> {
        let mut state = lock(&self.state);
        let (changed, now) = state.set_drained(name, drained)?;
        let action = if drained { "drained" } else { "undrained" };
        tracing::info!(
            backend = name,
            state = now.as_str(),
            "{action} through the admin API"
        );
        if changed {
            self.apply(&state);
        }
        Ok(now)
    }

    fn reload(
        self: &Arc<Self>,
        new: Result<LbConfig, ConfigError>,
    ) -> Result<ReloadReport, ReloadError> {
        let mut state = lock(&self.state);
        let outcome = new.map_err(ReloadError::from).and_then(|new| {
            let (next, report) = state.reloaded(new)?;
            let pool = next.pool().map_err(ReloadError::Pool)?;
            Ok((next, report, pool))
        });
        match outcome {
            Ok((next, report, pool)) => {
                *state = next;
                state.count_reload(true);
                *lock(&self.admin_token) =
                    state.config().admin.as_ref().and_then(|a| a.token.clone());
                self.handle.set_pool(Arc::new(pool));
                self.restart_checks(&state);
                tracing::info!("configuration reloaded: {report}");
                Ok(report)
            }
            Err(err) => {
                state.count_reload(false);
                tracing::error!("reload refused, the running configuration stays: {err}");
                Err(err)
            }
        }
    }

    fn status(&self) -> Status {
        // Stats first: collecting them waits for the workers, which must not hold up the
        // state (health reports, drains) meanwhile.
        let stats = self.handle.stats();
        Status::new(&self.place, &lock(&self.state), &stats)
    }

    /// Replaces the health check tasks with ones for `state`'s backends and epoch.
    fn restart_checks(self: &Arc<Self>, state: &State) {
        let mut checks = lock(&self.checks);
        checks.drain(..).for_each(|c| c.abort());
        let epoch = state.epoch();
        let shared = Arc::downgrade(self);
        *checks = health::spawn_checks(
            &self.runtime,
            &self.prober,
            &state.config().health,
            state.checked_backends(),
            move |name, result| {
                if let Some(shared) = shared.upgrade() {
                    shared.report_check(epoch, name, result);
                }
            },
        );
    }

    /// Takes one health check of backend `name`, from checks started at `epoch`.
    fn report_check(&self, epoch: u64, name: &str, outcome: Outcome) {
        let mut state = lock(&self.state);
        if state.epoch() != epoch {
            return; // started before a reload: the backend may have changed
        }
        if let Some(why) = &outcome.failure {
            tracing::debug!(backend = name, "health check failed: {why}");
        }
        let why = outcome.failure.clone().unwrap_or_default();
        let Some(transition) = state.record_check(name, outcome) else {
            return;
        };
        let (from, to) = (transition.from.as_str(), transition.to.as_str());
        match transition.to {
            Health::Up | Health::Unknown => tracing::info!(backend = name, from, "backend {to}"),
            Health::Unready | Health::Down => {
                tracing::warn!(backend = name, from, "backend {to}: {why}");
            }
        }
        if transition.changes_routing() {
            self.apply(&state);
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        lock(&self.checks).drain(..).for_each(|c| c.abort());
        if let Some(admin) = lock(&self.admin).as_ref() {
            admin.abort();
        }
        // The data plane stops as it drops.
    }
}

/// The options [`Balancer::start`] starts the data plane with: the defaults, with the
/// settings a configuration file has (`flow_idle_timeout`).
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
/// # Ok::<(), qlb_lb::config::ConfigError>(())
/// ```
#[must_use]
pub fn dataplane_options(config: &LbConfig) -> DataplaneOptions {
    DataplaneOptions {
        flow_idle_timeout: config.flow_idle_timeout,
        ..DataplaneOptions::default()
    }
}

/// A poisoned lock only means a thread panicked holding it; the state is still whole (every
/// change is made in one assignment).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The configuration the daemon's unit tests start from.
#[cfg(test)]
mod fixture {
    use crate::config::LbConfig;

    /// Two backends (the file drains b2), an admin API, health thresholds of 2; `[health]`
    /// comes last, so that keys can be appended to it.
    pub(super) const CONFIG: &str = r#"
listen = ["127.0.0.1:4433"]
workers = 1
[[quic_lb]]
config_id = 0
server_id_len = 2
nonce_len = 6
[[backend]]
name = "b1"
addr = "127.0.0.1:5001"
server_id = "0001"
[[backend]]
name = "b2"
addr = "127.0.0.1:5002"
server_id = "0002"
state = "draining"
[admin]
listen = "127.0.0.1:9901"
[health]
healthy_threshold = 2
unhealthy_threshold = 2
"#;

    /// `text`, validated.
    pub(super) fn config(text: &str) -> LbConfig {
        LbConfig::from_toml(text, ".".as_ref()).expect("valid")
    }

    /// [`CONFIG`] with `from` (which must be in it) replaced by `to`, validated.
    pub(super) fn variant(from: &str, to: &str) -> LbConfig {
        assert!(CONFIG.contains(from), "{from}");
        config(&CONFIG.replacen(from, to, 1))
    }
}
