//! What the data plane has done: the routers' counters, traffic back to clients, flows, and
//! the datagrams the data plane itself dropped, summed over workers.

use std::collections::BTreeMap;
use std::sync::Arc;

use qlb_router::{CounterSnapshot, Traffic};

use super::retry::RetryCounts;

/// Why the data plane dropped a datagram the router had decided to forward, or one a backend
/// sent. (The router counts its own drops: [`qlb_router::DropReason`].) The last three are
/// `gue` mode's.
///
/// ```
/// use qlb_lb::dataplane::DataplaneDrop;
///
/// let labels: Vec<&str> = DataplaneDrop::ALL.iter().map(|d| d.as_str()).collect();
/// assert_eq!(labels, [
///     "flow_table_full", "upstream_socket", "unknown_source", "send_blocked", "oversized",
///     "send_error", "encapsulation_failed", "decapsulation", "unknown_vip",
/// ]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DataplaneDrop {
    /// A new flow while the worker's flow table was full.
    FlowTableFull,
    /// A new flow whose upstream socket could not be opened (out of file descriptors or
    /// ports, for example).
    UpstreamSocket,
    /// A datagram on an upstream socket, or a GUE socket, from an address that is no backend
    /// of the pool.
    UnknownSource,
    /// The socket's send buffer was full.
    SendBlocked,
    /// The datagram is larger than the path to its destination takes (`EMSGSIZE`).
    Oversized,
    /// Any other send error.
    SendError,
    /// A client datagram that could not be encapsulated: a wildcard listener's datagram
    /// without its destination address (so no VIP for the inner header), or one too long for
    /// an inner UDP datagram.
    EncapsulationFailed,
    /// A datagram on a GUE socket from a backend that is not a GUE packet carrying a UDP
    /// datagram (`qlb_gue::DecapError`), or whose inner destination is no client (port 0,
    /// the unspecified address, multicast).
    Decapsulation,
    /// A backend's encapsulated reply whose inner source is none of the listening addresses
    /// (exactly, or by port for a wildcard listener).
    UnknownVip,
}

impl DataplaneDrop {
    /// Every reason.
    pub const ALL: [DataplaneDrop; 9] = [
        Self::FlowTableFull,
        Self::UpstreamSocket,
        Self::UnknownSource,
        Self::SendBlocked,
        Self::Oversized,
        Self::SendError,
        Self::EncapsulationFailed,
        Self::Decapsulation,
        Self::UnknownVip,
    ];

    /// A stable snake_case label, for metrics and logs.
    ///
    /// ```
    /// assert_eq!(qlb_lb::dataplane::DataplaneDrop::FlowTableFull.as_str(), "flow_table_full");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FlowTableFull => "flow_table_full",
            Self::UpstreamSocket => "upstream_socket",
            Self::UnknownSource => "unknown_source",
            Self::SendBlocked => "send_blocked",
            Self::Oversized => "oversized",
            Self::SendError => "send_error",
            Self::EncapsulationFailed => "encapsulation_failed",
            Self::Decapsulation => "decapsulation",
            Self::UnknownVip => "unknown_vip",
        }
    }
}

/// Why a live flow was closed before it lapsed: to make room for a new one.
///
/// ```
/// use qlb_lb::dataplane::FlowEviction;
///
/// let labels: Vec<&str> = FlowEviction::ALL.iter().map(|e| e.as_str()).collect();
/// assert_eq!(labels, ["unconfirmed_cap", "table_full"]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FlowEviction {
    /// The least recently used unconfirmed flow (no reply from its backend yet), evicted for
    /// a new flow when `max_unconfirmed_flows` were unconfirmed.
    UnconfirmedCap,
    /// The least recently used unconfirmed flow, evicted for a new flow when the table held
    /// `max_flows`.
    TableFull,
}

impl FlowEviction {
    /// Every reason.
    pub const ALL: [FlowEviction; 2] = [Self::UnconfirmedCap, Self::TableFull];

    /// A stable snake_case label, for metrics and logs.
    ///
    /// ```
    /// assert_eq!(qlb_lb::dataplane::FlowEviction::UnconfirmedCap.as_str(), "unconfirmed_cap");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnconfirmedCap => "unconfirmed_cap",
            Self::TableFull => "table_full",
        }
    }
}

/// Why a new flow was refused (its datagram is dropped, counted in [`Stats::dropped`] under
/// [`FlowRefusal::drop`]).
///
/// ```
/// use qlb_lb::dataplane::FlowRefusal;
///
/// let labels: Vec<&str> = FlowRefusal::ALL.iter().map(|r| r.as_str()).collect();
/// assert_eq!(labels, ["table_full", "upstream_socket"]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum FlowRefusal {
    /// No flow could be evicted: the unconfirmed class or the whole table was full and every
    /// unconfirmed flow was in use by the batch being forwarded (or there were none).
    TableFull,
    /// Its upstream socket could not be opened, connected or registered.
    UpstreamSocket,
}

impl FlowRefusal {
    /// Every reason.
    pub const ALL: [FlowRefusal; 2] = [Self::TableFull, Self::UpstreamSocket];

    /// A stable snake_case label, for metrics and logs.
    ///
    /// ```
    /// assert_eq!(qlb_lb::dataplane::FlowRefusal::TableFull.as_str(), "table_full");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TableFull => "table_full",
            Self::UpstreamSocket => "upstream_socket",
        }
    }

    /// The reason the refused flow's datagrams are dropped for.
    ///
    /// ```
    /// use qlb_lb::dataplane::{DataplaneDrop, FlowRefusal};
    ///
    /// assert_eq!(FlowRefusal::TableFull.drop(), DataplaneDrop::FlowTableFull);
    /// ```
    pub fn drop(self) -> DataplaneDrop {
        match self {
            Self::TableFull => DataplaneDrop::FlowTableFull,
            Self::UpstreamSocket => DataplaneDrop::UpstreamSocket,
        }
    }
}

/// A copy of the data plane's counters, summed over its workers. Counts only grow over the
/// data plane's life (they export as Prometheus counters), except [`Stats::flows_active`] and
/// [`Stats::flows_unconfirmed`].
///
/// Client to backend: [`Stats::router`] holds every routing decision, drops by reason and
/// datagrams and octets per backend as routed (the client's datagrams, before any
/// encapsulation); datagrams the data plane then failed to send are in [`Stats::dropped`].
/// Backend to client: [`Stats::to_clients`], counted as received from a backend of the pool
/// (in `gue` mode, the decapsulated datagrams, once their VIP is known). In `gue` mode the
/// flow counts stay 0.
///
/// ```
/// use qlb_lb::dataplane::{DataplaneDrop, Stats};
///
/// let stats = Stats::default();
/// assert_eq!(stats.flows_active, 0);
/// assert_eq!(stats.dropped(DataplaneDrop::FlowTableFull), 0);
/// assert_eq!(stats.to_clients().count(), 0);
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Stats {
    /// The routers' counters (client to backend), merged over listening addresses and workers.
    pub router: CounterSnapshot,
    /// Flows now in the flow tables.
    pub flows_active: u64,
    /// Flows now in the flow tables that their backend has not answered yet.
    pub flows_unconfirmed: u64,
    /// Flows opened (admitted).
    pub flows_created: u64,
    /// Flows confirmed: their backend answered.
    pub flows_confirmed: u64,
    /// Flows forgotten after `flow_idle_timeout` without traffic.
    pub flows_expired: u64,
    /// Receive calls that failed with an error (not datagrams; should stay 0).
    pub receive_errors: u64,
    /// Retry offload: Retries sent and tokens seen.
    pub retry: RetryCounts,
    /// `xdp` mode: the XDP program's counters, when it runs.
    pub xdp: Option<qlb_xdp::XdpCounters>,
    dropped: [u64; DataplaneDrop::ALL.len()],
    evicted: [u64; FlowEviction::ALL.len()],
    refused: [u64; FlowRefusal::ALL.len()],
    to_clients: BTreeMap<Arc<str>, Traffic>,
}

impl Stats {
    /// Datagrams the data plane dropped for `reason`.
    ///
    /// ```
    /// use qlb_lb::dataplane::{DataplaneDrop, Stats};
    ///
    /// assert_eq!(Stats::default().dropped(DataplaneDrop::SendError), 0);
    /// ```
    pub fn dropped(&self, reason: DataplaneDrop) -> u64 {
        self.dropped.get(reason as usize).copied().unwrap_or(0)
    }

    /// Flows closed before they lapsed, for `reason`.
    ///
    /// ```
    /// use qlb_lb::dataplane::{FlowEviction, Stats};
    ///
    /// assert_eq!(Stats::default().evicted(FlowEviction::UnconfirmedCap), 0);
    /// ```
    pub fn evicted(&self, reason: FlowEviction) -> u64 {
        self.evicted.get(reason as usize).copied().unwrap_or(0)
    }

    /// New flows refused for `reason`.
    ///
    /// ```
    /// use qlb_lb::dataplane::{FlowRefusal, Stats};
    ///
    /// assert_eq!(Stats::default().refused(FlowRefusal::TableFull), 0);
    /// ```
    pub fn refused(&self, reason: FlowRefusal) -> u64 {
        self.refused.get(reason as usize).copied().unwrap_or(0)
    }

    /// Datagrams and octets received from each backend and sent on to clients, by backend
    /// name, sorted; a backend appears once it has sent something.
    ///
    /// ```
    /// let stats = qlb_lb::dataplane::Stats::default();
    /// assert!(stats.to_clients().all(|(_, traffic)| traffic.packets > 0));
    /// ```
    pub fn to_clients(&self) -> impl Iterator<Item = (&str, Traffic)> {
        self.to_clients
            .iter()
            .map(|(name, traffic)| (name.as_ref(), *traffic))
    }

    /// The traffic from backend `name` to clients (zero if none).
    ///
    /// ```
    /// use qlb_router::Traffic;
    ///
    /// assert_eq!(qlb_lb::dataplane::Stats::default().to_client("b1"), Traffic::default());
    /// ```
    pub fn to_client(&self, name: &str) -> Traffic {
        self.to_clients.get(name).copied().unwrap_or_default()
    }

    /// Adds `other` in: the sum over workers.
    pub(crate) fn merge(&mut self, other: &Stats) {
        self.router.merge(&other.router);
        self.flows_active += other.flows_active;
        self.flows_unconfirmed += other.flows_unconfirmed;
        self.flows_created += other.flows_created;
        self.flows_confirmed += other.flows_confirmed;
        self.flows_expired += other.flows_expired;
        self.receive_errors += other.receive_errors;
        self.retry.merge(&other.retry);
        let sums = [
            (&mut self.dropped[..], &other.dropped[..]),
            (&mut self.evicted[..], &other.evicted[..]),
            (&mut self.refused[..], &other.refused[..]),
        ];
        for (sums, counts) in sums {
            for (sum, count) in sums.iter_mut().zip(counts) {
                *sum += count;
            }
        }
        for (name, traffic) in &other.to_clients {
            self.add_to_client(name, *traffic);
        }
    }

    pub(crate) fn add_dropped(&mut self, reason: DataplaneDrop, datagrams: u64) {
        if let Some(count) = self.dropped.get_mut(reason as usize) {
            *count += datagrams;
        }
    }

    pub(crate) fn add_evicted(&mut self, reason: FlowEviction) {
        if let Some(count) = self.evicted.get_mut(reason as usize) {
            *count += 1;
        }
    }

    pub(crate) fn add_refused(&mut self, reason: FlowRefusal) {
        if let Some(count) = self.refused.get_mut(reason as usize) {
            *count += 1;
        }
    }

    pub(crate) fn add_to_client(&mut self, name: &Arc<str>, traffic: Traffic) {
        *self.to_clients.entry(Arc::clone(name)).or_default() += traffic;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_unique_and_in_order() {
        let labels: std::collections::HashSet<&str> =
            DataplaneDrop::ALL.iter().map(|d| d.as_str()).collect();
        assert_eq!(labels.len(), DataplaneDrop::ALL.len());
        for (position, reason) in DataplaneDrop::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, position);
        }
        let evictions: std::collections::HashSet<&str> =
            FlowEviction::ALL.iter().map(|e| e.as_str()).collect();
        assert_eq!(evictions.len(), FlowEviction::ALL.len());
        for (position, reason) in FlowEviction::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, position);
        }
        for (position, reason) in FlowRefusal::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, position);
        }
    }

    #[test]
    fn merge_sums_everything() {
        let name: Arc<str> = Arc::from("b1");
        let mut one = Stats {
            flows_active: 1,
            flows_created: 2,
            flows_expired: 1,
            receive_errors: 1,
            ..Stats::default()
        };
        one.add_dropped(DataplaneDrop::SendBlocked, 3);
        one.add_evicted(FlowEviction::TableFull);
        one.add_refused(FlowRefusal::UpstreamSocket);
        one.add_to_client(
            &name,
            Traffic {
                packets: 1,
                bytes: 100,
            },
        );
        let mut total = one.clone();
        total.merge(&one);
        assert_eq!(
            (
                total.flows_active,
                total.flows_created,
                total.flows_expired,
                total.receive_errors
            ),
            (2, 4, 2, 2)
        );
        assert_eq!(total.dropped(DataplaneDrop::SendBlocked), 6);
        assert_eq!(total.evicted(FlowEviction::TableFull), 2);
        assert_eq!(total.refused(FlowRefusal::UpstreamSocket), 2);
        assert_eq!(
            total.to_client("b1"),
            Traffic {
                packets: 2,
                bytes: 200
            }
        );
    }

    #[test]
    fn merging_sums_over_workers() {
        let worker = Stats {
            flows_created: 2,
            ..Stats::default()
        };
        let mut total = worker.clone();
        total.merge(&worker);
        assert_eq!(total.flows_created, 4);
    }
}
