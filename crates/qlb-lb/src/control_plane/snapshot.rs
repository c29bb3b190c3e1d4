//! The snapshot types: what `GET /status` answers and `/metrics` exports, the running
//! configuration's backends with every layer of their state, and the data plane's counters.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use qlb_router::{BackendState, Traffic};
use serde::{Serialize, Serializer};

use super::fleet::FleetStatus;
use crate::dataplane::RetryCounts;
use crate::health::Health;

/// An operator's decision through the admin API that overrides the file's `state`.
///
/// ```
/// use qlb_lb::daemon::AdminOverride;
///
/// assert_eq!(serde_json::to_string(&AdminOverride::Drain)?, "\"drain\"");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AdminOverride {
    /// Drained: no new connections, existing ones still delivered.
    Drain,
}

/// A snapshot of the load balancer, as `GET /status` serves it (JSON).
///
/// ```no_run
/// # async fn show(balancer: qlb_lb::Balancer) -> Result<(), serde_json::Error> {
/// let status = balancer.status().await;
/// for backend in &status.backends {
///     println!("{} {}", backend.name, backend.effective_state.as_str());
/// }
/// println!("{}", serde_json::to_string_pretty(&status)?);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// The forwarding mode: `proxy`, `gue` or `xdp`.
    pub mode: &'static str,
    /// The bound UDP addresses clients send to.
    pub listen: Vec<SocketAddr>,
    /// The bound GUE addresses (`gue` mode; empty in `proxy` mode): encapsulated datagrams
    /// leave from them and the backends' encapsulated replies come back to them.
    pub gue: Vec<SocketAddr>,
    /// The admin API's bound address, if it runs.
    pub admin: Option<SocketAddr>,
    /// The file reloads re-read, if any.
    pub config_file: Option<PathBuf>,
    /// Data-plane threads.
    pub workers: usize,
    /// Whether health checks run.
    pub health_checks: bool,
    /// The QUIC-LB codepoints the load balancer decodes, in file order.
    pub quic_lb_config_ids: Vec<u8>,
    /// Every backend of the running configuration, in file order.
    pub backends: Vec<BackendStatus>,
    /// The data plane's flows.
    pub flows: FlowCounts,
    /// Datagrams forwarded, by how the backend was chosen (`cid`, `dcid_table`,
    /// `tuple_table`, `fallback`).
    pub routed: BTreeMap<&'static str, u64>,
    /// Datagrams routed by the server ID in their CID (`routed["cid"]`), by the QUIC-LB
    /// codepoint (`config_id`) they were decoded under: every codepoint of the running
    /// configuration, and any other that routed datagrams since start. During a key
    /// rotation, the old codepoint's count stops growing once its connections are gone.
    pub routed_by_codepoint: BTreeMap<u8, u64>,
    /// Datagrams dropped, by reason.
    pub dropped: DropCounts,
    /// Failed receive calls of the data plane (not datagrams; should stay 0).
    pub receive_errors: u64,
    /// Retry offload: Retries sent and the tokens of Initials (all zero when it is off).
    pub retry: RetryCounts,
    /// Reloads since start.
    pub reloads: ReloadCounts,
    /// Admin API requests refused, by [`AdminRefusal`] label, every reason present.
    pub admin_refused: BTreeMap<&'static str, u64>,
    /// The fleet on etcd this load balancer follows, with an `[etcd]` table.
    pub fleet: Option<FleetStatus>,
    /// `xdp` mode: the XDP program and its counters.
    pub xdp: Option<XdpStatus>,
}

/// `xdp` mode's kernel fast path: whether the program runs, and what it decided. Its
/// datagrams are not in the other counts of [`Status`], which are the userspace data
/// plane's: that sees only what the program passed up (or everything, when it is not
/// running).
#[derive(Clone, Debug, Default, Serialize)]
#[non_exhaustive]
pub struct XdpStatus {
    /// Whether the program is attached and deciding.
    pub running: bool,
    /// The interface it runs on, or was to.
    pub interface: String,
    /// Why it is not running, if it is not.
    pub error: Option<String>,
    /// Datagrams it forwarded, by route (as [`Status::routed`]).
    pub routed: BTreeMap<&'static str, u64>,
    /// CID-routed datagrams by codepoint.
    pub routed_by_codepoint: BTreeMap<u8, u64>,
    /// Datagrams it dropped, by reason (as the router's).
    pub dropped: BTreeMap<&'static str, u64>,
    /// Datagrams it passed up to the userspace data plane, by reason.
    pub passed: BTreeMap<&'static str, u64>,
}

/// One backend: what the file says, what operators and health checks add, and the result.
///
/// ```
/// use qlb_lb::daemon::TrafficCount;
///
/// assert_eq!(TrafficCount::default().packets, 0);
/// ```
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct BackendStatus {
    /// Its name.
    pub name: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Where health checks go, when not `addr`.
    pub health_addr: Option<SocketAddr>,
    /// Its server ID, hex.
    pub server_id: String,
    /// Its weight.
    pub weight: u32,
    /// `state` in the file: `active` or `draining`.
    #[serde(serialize_with = "state_label")]
    pub configured_state: BackendState,
    /// A drain through the admin API, if any.
    pub admin_override: Option<AdminOverride>,
    /// Health checks' view; `None` (JSON `null`) when checks are disabled.
    pub health: Option<HealthStatus>,
    /// What the router does with it: `active`, `draining` or `down`.
    #[serde(serialize_with = "state_label")]
    pub effective_state: BackendState,
    /// Client datagrams forwarded to it.
    pub to_backend: TrafficCount,
    /// Its datagrams relayed to clients.
    pub to_client: TrafficCount,
    /// Where it comes from: `file` (a `[[backend]]` table) or `etcd` (a fleet member).
    pub source: &'static str,
}

/// A backend's health checks.
///
/// ```
/// use qlb_lb::daemon::{Health, HealthStatus};
///
/// let health = HealthStatus {
///     state: Health::Up,
///     checks_passed: 3,
///     checks_failed: 0,
///     transitions_up: 1,
///     transitions_unready: 0,
///     transitions_down: 0,
///     last_failure: None,
/// };
/// assert_eq!(serde_json::to_value(&health)?["state"], "up");
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Serialize)]
pub struct HealthStatus {
    /// `unknown` (not checked yet; routed), `up`, `unready` (answers, fails: no new
    /// connections) or `down` (silent: nothing reaches it).
    pub state: Health,
    /// Checks passed since the record started.
    pub checks_passed: u64,
    /// Checks failed since the record started.
    pub checks_failed: u64,
    /// Transitions to up (the first check counts, from unknown).
    pub transitions_up: u64,
    /// Transitions to unready.
    pub transitions_unready: u64,
    /// Transitions to down.
    pub transitions_down: u64,
    /// Why the last failed check failed.
    pub last_failure: Option<String>,
}

/// Datagrams and octets.
///
/// ```
/// use qlb_lb::daemon::TrafficCount;
///
/// let count = TrafficCount::from(qlb_router::Traffic { packets: 2, bytes: 2400 });
/// assert_eq!((count.packets, count.bytes), (2, 2400));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize)]
pub struct TrafficCount {
    /// Datagrams.
    pub packets: u64,
    /// UDP payload octets.
    pub bytes: u64,
}

impl From<Traffic> for TrafficCount {
    fn from(traffic: Traffic) -> Self {
        Self {
            packets: traffic.packets,
            bytes: traffic.bytes,
        }
    }
}

/// The data plane's flows (one per client address, listening address and backend).
///
/// ```
/// assert_eq!(qlb_lb::daemon::FlowCounts::default().active, 0);
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct FlowCounts {
    /// In the flow tables now.
    pub active: u64,
    /// In the flow tables now, not yet answered by their backend.
    pub unconfirmed: u64,
    /// Opened (admitted) since start.
    pub created: u64,
    /// Confirmed (their backend answered) since start.
    pub confirmed: u64,
    /// Expired after `flow_idle_timeout` since start.
    pub expired: u64,
    /// Evicted to make room since start, by [`FlowEviction`](crate::dataplane::FlowEviction)
    /// label, every reason present.
    pub evicted: BTreeMap<&'static str, u64>,
    /// New flows refused since start, by [`FlowRefusal`](crate::dataplane::FlowRefusal)
    /// label, every reason present.
    pub refused: BTreeMap<&'static str, u64>,
}

/// Drops by reason: the router's (before forwarding) and the data plane's (flows, sends).
///
/// ```
/// assert!(qlb_lb::daemon::DropCounts::default().router.is_empty());
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize)]
pub struct DropCounts {
    /// By [`DropReason`](qlb_router::DropReason) label, every reason present.
    pub router: BTreeMap<&'static str, u64>,
    /// By [`DataplaneDrop`](crate::dataplane::DataplaneDrop) label, every reason present.
    pub dataplane: BTreeMap<&'static str, u64>,
}

/// Reloads since start (file, `POST /reload` and in-process).
///
/// ```
/// assert_eq!(qlb_lb::daemon::ReloadCounts::default().refused, 0);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize)]
pub struct ReloadCounts {
    /// Reloads that swapped in a new configuration.
    pub applied: u64,
    /// Reloads refused (the running configuration stayed).
    pub refused: u64,
}

/// Why the admin API refused a request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum AdminRefusal {
    /// `Host` is not one of the API's names (DNS rebinding, or a misdirected request).
    Host,
    /// A state-changing request from another origin (a cross-site POST).
    Origin,
    /// No valid bearer token.
    Token,
}

impl AdminRefusal {
    pub(crate) const ALL: [Self; 3] = [Self::Host, Self::Origin, Self::Token];

    /// The label in `/status` and `/metrics`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::Origin => "origin",
            Self::Token => "token",
        }
    }
}

/// Where the load balancer runs: its bound addresses and the file it reloads, which
/// `Status` reports besides state and counters.
#[derive(Clone, Debug)]
pub(crate) struct Addresses {
    pub(crate) listen: Vec<SocketAddr>,
    pub(crate) gue: Vec<SocketAddr>,
    pub(crate) admin: Option<SocketAddr>,
    pub(crate) config_file: Option<PathBuf>,
}

fn state_label<S: Serializer>(state: &BackendState, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(state.as_str())
}
