//! The control plane: the running state behind the load balancer, and every operation on
//! it (admin drains, reloads, health reports, status), each applied to the data plane as one
//! pool swap. The [`Balancer`](crate::Balancer) and the admin API both work through it.

#[cfg(test)]
mod fixture;
mod fleet;
mod reload;
mod running;
mod snapshot;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use qlb_client::Prober;
use qlb_router::{BackendState, DropReason, Route, Traffic};
use quic_lb::ConfigId;
use tokio::runtime::Handle;
use tokio::task::AbortHandle;

use crate::config::{AdminConfig, ConfigError, LbConfig, LeftOut};
use crate::dataplane::{
    Dataplane, DataplaneDrop, DataplaneError, DataplaneHandle, FlowEviction, FlowRefusal,
    KernelPathState, Stats,
};
use crate::health::{self, Health, Outcome};
use crate::sync::lock;
pub(crate) use fleet::Fleet;
pub use fleet::FleetStatus;
use qlb_xdp::CounterKind;
pub use reload::{ReloadError, ReloadReport};
pub(crate) use running::Running;
pub use running::UnknownBackend;
pub(crate) use snapshot::{Addresses, AdminRefusal};
pub use snapshot::{
    AdminOverride, BackendStatus, DropCounts, FlowCounts, HealthStatus, ReloadCounts, Status,
    TrafficCount, XdpStatus,
};

/// The running state and the data plane it drives, shared by every [`Balancer`](crate::Balancer)
/// handle and the admin API; health checks and the admin API hold it weakly, so dropping the
/// last balancer handle stops everything.
#[derive(Debug)]
pub(crate) struct ControlPlane {
    running: Mutex<Running>,
    /// What the running configuration is made of: the file and the fleet on etcd (locked
    /// after `running` when both are).
    sources: Mutex<Sources>,
    /// The running health check tasks (locked after `running` when both are).
    checks: Mutex<Vec<AbortHandle>>,
    /// The `[admin]` table (token, allowed hosts), apart from `running` so that authorizing a
    /// request never waits for a pool swap.
    admin: Mutex<Option<AdminConfig>>,
    /// Admin requests refused, by [`AdminRefusal`] in `ALL` order.
    admin_refused: [AtomicU64; AdminRefusal::ALL.len()],
    handle: DataplaneHandle,
    /// Taken by `shutdown`.
    dataplane: Mutex<Option<Dataplane>>,
    addresses: Addresses,
    runtime: Handle,
    prober: Arc<Prober>,
}

impl ControlPlane {
    /// The control plane of `dataplane`, which routes with `running`'s pool, with its health
    /// checks started. Must be called inside a tokio runtime.
    #[must_use = "dropping the control plane stops the health checks and the data plane"]
    pub(crate) fn start(
        running: Running,
        dataplane: Dataplane,
        addresses: Addresses,
        prober: Prober,
    ) -> Arc<Self> {
        let control = Arc::new(Self {
            admin: Mutex::new(running.config().admin.clone()),
            sources: Mutex::new(Sources {
                file: running.config().clone(),
                fleet: None,
                link: running.config().etcd.as_ref().map(FleetStatus::new),
            }),
            admin_refused: Default::default(),
            handle: dataplane.handle(),
            dataplane: Mutex::new(Some(dataplane)),
            checks: Mutex::new(Vec::new()),
            addresses,
            runtime: Handle::current(),
            prober: Arc::new(prober),
            running: Mutex::new(running),
        });
        control.restart_checks(&lock(&control.running));
        control
    }

    /// Where the load balancer runs.
    pub(crate) fn addresses(&self) -> &Addresses {
        &self.addresses
    }

    /// The `[admin]` table as last loaded.
    pub(crate) fn admin_config(&self) -> Option<AdminConfig> {
        lock(&self.admin).clone()
    }

    /// Counts an admin request refused for `reason`.
    pub(crate) fn count_admin_refusal(&self, reason: AdminRefusal) {
        self.admin_refused[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Re-reads the configuration file and swaps it in, or refuses it.
    pub(crate) async fn reload(self: &Arc<Self>) -> Result<ReloadReport, ReloadError> {
        let Some(path) = self.addresses.config_file.clone() else {
            return Err(ReloadError::NoConfigFile);
        };
        self.blocking(move |control| control.reload_with(LbConfig::from_file(&path)))
            .await
    }

    /// Swaps in `config`, or refuses it.
    pub(crate) async fn reload_from(
        self: &Arc<Self>,
        config: LbConfig,
    ) -> Result<ReloadReport, ReloadError> {
        self.blocking(move |control| control.reload_with(Ok(config)))
            .await
    }

    /// Routes to `fleet`'s members beside the file's backends, as a reload does (the
    /// configuration's checks, one pool swap, health records and drains kept), or refuses
    /// it and keeps the last fleet.
    pub(crate) async fn apply_fleet(
        self: &Arc<Self>,
        fleet: Fleet,
    ) -> Result<ReloadReport, ReloadError> {
        self.blocking(move |control| control.apply_fleet_now(fleet))
            .await
    }

    /// Records that etcd answered.
    pub(crate) fn fleet_reached(&self) {
        if let Some(link) = &mut lock(&self.sources).link {
            link.reached();
        }
    }

    /// Records that etcd could not be reached or read, and why; whether it could until now.
    pub(crate) fn fleet_lost(&self, why: String) -> bool {
        lock(&self.sources)
            .link
            .as_mut()
            .is_some_and(|link| link.lost(why))
    }

    /// What this load balancer says of itself on etcd: the fleet revision it routes by.
    pub(crate) fn fleet_record(&self) -> Option<qlb_etcd::LbRecord> {
        let state = lock(&self.running);
        let sources = lock(&self.sources);
        let link = sources.link.as_ref()?;
        Some(qlb_etcd::LbRecord {
            name: link.name.clone(),
            revision: link.revision,
            members: link.members,
            codepoints: state
                .config()
                .cluster
                .quic_lb
                .iter()
                .map(|c| c.id().get())
                .collect(),
        })
    }

    /// Sets or clears the admin drain of backend `name`; returns its effective state.
    pub(crate) async fn set_drained(
        self: &Arc<Self>,
        name: &str,
        drained: bool,
    ) -> Result<BackendState, UnknownBackend> {
        let name = name.to_owned();
        self.blocking(move |control| control.set_drained_now(&name, drained))
            .await
    }

    /// A snapshot of backends, flows and counters.
    pub(crate) async fn status(self: &Arc<Self>) -> Status {
        self.blocking(|control| control.status_now()).await
    }

    /// Stops the health checks and the data plane; returns the data plane's final counters.
    pub(crate) async fn shutdown(self: &Arc<Self>) -> Result<Stats, DataplaneError> {
        self.blocking(|control| {
            lock(&control.running).stop();
            lock(&control.checks).drain(..).for_each(|c| c.abort());
            let dataplane = lock(&control.dataplane).take();
            match dataplane {
                Some(dataplane) => dataplane.shutdown(),
                None => Ok(control.handle.stats()),
            }
        })
        .await
    }

    /// Runs `work` on a blocking thread: pool swaps and stats wait for the data plane.
    async fn blocking<R: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Arc<Self>) -> R + Send + 'static,
    ) -> R {
        let control = Arc::clone(self);
        match tokio::task::spawn_blocking(move || work(&control)).await {
            Ok(result) => result,
            // A panic in `work` is a bug: let it reach the caller.
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Blocking tasks are only cancelled when the runtime shuts down, which drops
            // this future first.
            Err(err) => panic!("the runtime is shutting down: {err}"),
        }
    }

    /// Swaps in the pool for `state`.
    fn apply(&self, state: &Running) {
        match state.pool() {
            Ok(pool) => self.handle.set_pool(Arc::new(pool)),
            // The configuration's pool was built once already; states do not make it invalid.
            Err(err) => tracing::error!(%err, "cannot build the routing pool; keeping the last"),
        }
    }

    fn set_drained_now(&self, name: &str, drained: bool) -> Result<BackendState, UnknownBackend> {
        let mut state = lock(&self.running);
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

    fn reload_with(
        self: &Arc<Self>,
        new: Result<LbConfig, ConfigError>,
    ) -> Result<ReloadReport, ReloadError> {
        let mut state = lock(&self.running);
        let mut sources = lock(&self.sources);
        let outcome = new.map_err(ReloadError::from).and_then(|file| {
            let (merged, left_out) = Sources::merged(&file, sources.fleet.as_ref())?;
            let swap = self.swap(&mut state, merged, Unchanged::SwapAnyway)?;
            Ok((file, left_out, swap))
        });
        match outcome {
            Ok((file, left_out, report)) => {
                state.count_reload(true);
                sources.file = file;
                let sources = &mut *sources;
                if let (Some(link), Some(fleet)) = (&mut sources.link, &sources.fleet) {
                    warn_left_out(link, &left_out);
                    let routed = fleet.len().saturating_sub(left_out.len());
                    link.rerouted(fleet, routed, &left_out);
                }
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

    fn apply_fleet_now(self: &Arc<Self>, fleet: Fleet) -> Result<ReloadReport, ReloadError> {
        let mut state = lock(&self.running);
        let mut sources = lock(&self.sources);
        let merged = Sources::merged(&sources.file, Some(&fleet)).map_err(ReloadError::from);
        match merged.and_then(|(merged, left_out)| {
            let report = self.swap(&mut state, merged, Unchanged::Keep)?;
            Ok((report, left_out))
        }) {
            Ok((report, left_out)) => {
                if !report.is_empty() {
                    tracing::info!(
                        revision = fleet.revision(),
                        "fleet on etcd applied: {report}"
                    );
                }
                if let Some(link) = &mut sources.link {
                    warn_left_out(link, &left_out);
                    let problem = fleet.cluster_problem();
                    if problem.is_some() && problem != link.cluster_problem {
                        tracing::warn!("{}", problem.as_deref().unwrap_or_default());
                    }
                    link.applied(
                        &fleet,
                        fleet.len().saturating_sub(left_out.len()),
                        &left_out,
                    );
                }
                sources.fleet = Some(fleet);
                Ok(report)
            }
            Err(err) => {
                tracing::error!(
                    revision = fleet.revision(),
                    "fleet on etcd refused, the last one stays: {err}"
                );
                Err(err)
            }
        }
    }

    /// Swaps in `new` as the running configuration (one pool swap), or refuses it and
    /// changes nothing.
    fn swap(
        self: &Arc<Self>,
        state: &mut Running,
        new: LbConfig,
        unchanged: Unchanged,
    ) -> Result<ReloadReport, ReloadError> {
        let (next, report) = state.reloaded(new)?;
        if report.is_empty() && unchanged == Unchanged::Keep {
            return Ok(report);
        }
        let pool = next.pool().map_err(ReloadError::Pool)?;
        *state = next;
        *lock(&self.admin) = state.config().admin.clone();
        self.handle.set_pool(Arc::new(pool));
        self.restart_checks(state);
        Ok(report)
    }

    fn status_now(&self) -> Status {
        // Stats first: collecting them waits for the workers, which must not hold up the
        // state (health reports, drains) meanwhile.
        let stats = self.handle.stats();
        let state = lock(&self.running);
        let sources = lock(&self.sources);
        let mut status = status(&self.addresses, &state, &stats);
        for backend in &mut status.backends {
            if !sources.file.backends.iter().any(|b| b.name == backend.name) {
                backend.source = "etcd";
            }
        }
        status.fleet = sources.link.clone();
        status.xdp = self
            .handle
            .kernel_path()
            .map(|state| xdp_status(state, stats.xdp.as_ref()));
        status.admin_refused = AdminRefusal::ALL
            .iter()
            .map(|&r| {
                (
                    r.as_str(),
                    self.admin_refused[r as usize].load(Ordering::Relaxed),
                )
            })
            .collect();
        status
    }

    /// Replaces the health check tasks with ones for `state`'s backends and epoch.
    fn restart_checks(self: &Arc<Self>, state: &Running) {
        let mut checks = lock(&self.checks);
        checks.drain(..).for_each(|c| c.abort());
        let epoch = state.epoch();
        let control = Arc::downgrade(self);
        *checks = health::spawn_checks(
            &self.runtime,
            &self.prober,
            &state.config().health,
            state.checked_backends(),
            move |name, result| {
                if let Some(control) = control.upgrade() {
                    control.report_check(epoch, name, result);
                }
            },
        );
    }

    /// Takes one health check of backend `name`, from checks started at `epoch`.
    fn report_check(&self, epoch: u64, name: &str, outcome: Outcome) {
        let mut state = lock(&self.running);
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

/// What [`ControlPlane::swap`] does with a configuration that changes nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Unchanged {
    /// Swaps it in all the same: an operator's reload restarts the health checks.
    SwapAnyway,
    /// Keeps the running state (and its health checks' rhythm), as for a fleet change
    /// elsewhere than this load balancer's backends.
    Keep,
}

/// What the running configuration is made of.
#[derive(Debug)]
struct Sources {
    /// The file as last loaded (or the configuration given in memory).
    file: LbConfig,
    /// The fleet on etcd as last applied.
    fleet: Option<Fleet>,
    /// The link to etcd, with an `[etcd]` table.
    link: Option<FleetStatus>,
}

impl Sources {
    /// `file` with the cluster's QUIC-LB tables and secret from etcd (when it has them) and
    /// `fleet`'s members after its own backends; and the members left out.
    fn merged(
        file: &LbConfig,
        fleet: Option<&Fleet>,
    ) -> Result<(LbConfig, Vec<LeftOut>), ConfigError> {
        let Some(fleet) = fleet else {
            return Ok((file.clone(), Vec::new()));
        };
        let base = match fleet.cluster() {
            Some(cluster) => file.with_cluster(cluster.clone())?,
            None => file.clone(),
        };
        let (members, mut unreadable) = fleet.backends();
        let (merged, mut left_out) = base.with_members(members);
        left_out.append(&mut unreadable);
        Ok((merged, left_out))
    }
}

/// Warns of each member `left_out` for a reason `link` had not recorded: once per member
/// and reason, not at every fleet change.
fn warn_left_out(link: &FleetStatus, left_out: &[LeftOut]) {
    for member in left_out.iter().filter(|m| link.newly_left_out(m)) {
        tracing::warn!(member = %member.name, "fleet member left out: {}", member.why);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        lock(&self.checks).drain(..).for_each(|c| c.abort());
        // The data plane stops as it drops.
    }
}

/// The snapshot of `running`, with the data plane's `stats`, at `addresses`.
fn status(addresses: &Addresses, running: &Running, stats: &Stats) -> Status {
    let config = running.config();
    let to_backend: BTreeMap<&str, Traffic> = stats.router.backends().collect();
    let backends = config
        .backends
        .iter()
        .map(|b| BackendStatus {
            name: b.name.clone(),
            addr: b.addr,
            health_addr: b.health_addr,
            server_id: b.server_id.to_string(),
            weight: b.weight,
            configured_state: b.state,
            admin_override: running.admin_override(&b.name),
            health: running.health(&b.name),
            effective_state: running.effective_state(b),
            to_backend: to_backend
                .get(b.name.as_str())
                .copied()
                .unwrap_or_default()
                .into(),
            to_client: stats.to_client(&b.name).into(),
            source: "file",
        })
        .collect();
    Status {
        mode: config.mode.as_str(),
        listen: addresses.listen.clone(),
        gue: addresses.gue.clone(),
        admin: addresses.admin,
        config_file: addresses.config_file.clone(),
        workers: config.workers.get(),
        health_checks: config.health.enabled,
        quic_lb_config_ids: config
            .cluster
            .quic_lb
            .iter()
            .map(|c| c.id().get())
            .collect(),
        backends,
        flows: FlowCounts {
            active: stats.flows_active,
            unconfirmed: stats.flows_unconfirmed,
            created: stats.flows_created,
            confirmed: stats.flows_confirmed,
            expired: stats.flows_expired,
            evicted: FlowEviction::ALL
                .iter()
                .map(|e| (e.as_str(), stats.evicted(*e)))
                .collect(),
            refused: FlowRefusal::ALL
                .iter()
                .map(|r| (r.as_str(), stats.refused(*r)))
                .collect(),
        },
        routed: Route::ALL
            .iter()
            .map(|r| (r.as_str(), stats.router.routed(*r)))
            .collect(),
        routed_by_codepoint: (0..ConfigId::COUNT as u8)
            .filter_map(|id| ConfigId::new(id).ok())
            .map(|id| (id, stats.router.routed_by_codepoint(id)))
            .filter(|&(id, count)| count > 0 || config.cluster.quic_lb.iter().any(|c| c.id() == id))
            .map(|(id, count)| (id.get(), count))
            .collect(),
        dropped: DropCounts {
            router: DropReason::ALL
                .iter()
                .map(|r| (r.as_str(), stats.router.dropped(*r)))
                .collect(),
            dataplane: DataplaneDrop::ALL
                .iter()
                .map(|r| (r.as_str(), stats.dropped(*r)))
                .collect(),
        },
        receive_errors: stats.receive_errors,
        retry: stats.retry,
        reloads: running.reloads(),
        admin_refused: BTreeMap::new(),
        fleet: None,
        xdp: None,
    }
}

/// `xdp` mode's part of the status: the program's state and counters, in the router's labels.
fn xdp_status(state: &KernelPathState, counters: Option<&qlb_xdp::XdpCounters>) -> XdpStatus {
    let mut status = match state {
        KernelPathState::Attached { interface } => XdpStatus {
            running: true,
            interface: interface.clone(),
            ..XdpStatus::default()
        },
        KernelPathState::Failed { interface, reason } => XdpStatus {
            interface: interface.clone(),
            error: Some(reason.clone()),
            ..XdpStatus::default()
        },
    };
    let Some(counters) = counters else {
        return status;
    };
    for counter in qlb_xdp::Counter::ALL {
        let count = counters.get(counter);
        match counter.kind() {
            CounterKind::Routed(route) => {
                status.routed.insert(route.as_str(), count);
            }
            CounterKind::Dropped(reason) => {
                status.dropped.insert(reason.as_str(), count);
            }
            CounterKind::Passed(reason) => {
                status.passed.insert(reason, count);
            }
            CounterKind::Codepoint(codepoint) if count > 0 => {
                status.routed_by_codepoint.insert(codepoint, count);
            }
            _ => {}
        }
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LbConfig;

    #[test]
    fn every_layer_of_a_backend_shows() {
        let config = LbConfig::from_toml(
            r#"
            listen = ["127.0.0.1:4433"]
            [[quic_lb]]
            config_id = 2
            server_id_len = 1
            nonce_len = 6
            [[backend]]
            name = "b1"
            addr = "127.0.0.1:5001"
            server_id = "0a"
            weight = 3
            "#,
            ".".as_ref(),
        )
        .expect("valid");
        let mut state = Running::new(config);
        state.set_drained("b1", true).expect("b1");
        let addresses = Addresses {
            listen: vec!["127.0.0.1:4433".parse().expect("addr")],
            gue: Vec::new(),
            admin: None,
            config_file: None,
        };
        let json = serde_json::to_value(status(&addresses, &state, &Stats::default()))
            .expect("serializes");
        let backend = &json["backends"][0];
        assert_eq!(backend["server_id"], "0a");
        assert_eq!(backend["weight"], 3);
        assert_eq!(backend["configured_state"], "active");
        assert_eq!(backend["admin_override"], "drain");
        assert_eq!(backend["health"]["state"], "unknown");
        assert_eq!(backend["effective_state"], "draining");
        assert_eq!(backend["to_client"]["packets"], 0);
        assert_eq!(json["quic_lb_config_ids"], serde_json::json!([2]));
        assert_eq!(json["routed"]["cid"], 0);
        assert_eq!(json["dropped"]["router"]["no_backend"], 0);
        assert_eq!(json["dropped"]["dataplane"]["flow_table_full"], 0);
        assert_eq!(json["flows"]["active"], 0);
        assert_eq!(json["admin"], serde_json::Value::Null);
        assert_eq!(json["mode"], "proxy");
        assert_eq!(json["gue"], serde_json::json!([]));
        assert_eq!(backend["health_addr"], serde_json::Value::Null);
    }
}
