//! The server's Prometheus metrics: connections, requests by status, GOAWAYs, closes by
//! reason, peer address changes, issued connection IDs, QUIC-LB nonces left, and GUE mode's
//! datagrams, drops and return routes.

use std::sync::{Arc, OnceLock};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::cid_generator::CidCounters;
use crate::early::EarlyOutcome;
use crate::gue::Dropped;
use crate::lifecycle::CloseReason;

type Label<V> = [(&'static str, V); 1];

/// The server's metrics. Clones share the same values; [`Metrics::register`] exposes them.
///
/// ```
/// use prometheus_client::registry::Registry;
///
/// let metrics = qlb_server::Metrics::default();
/// let mut registry = Registry::default();
/// metrics.register(&mut registry);
/// let mut text = String::new();
/// prometheus_client::encoding::text::encode(&mut text, &registry)?;
/// assert!(text.contains("qlb_server_active_connections 0"), "{text}");
/// # Ok::<(), std::fmt::Error>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    active_connections: Gauge,
    handshakes: Family<Label<&'static str>, Counter>,
    connections_refused: Counter,
    requests: Family<Label<u16>, Counter>,
    /// The `requests` counters of statuses 100..=599, looked up once each: a request then
    /// costs one atomic add, not a family lookup under a lock.
    requests_by_status: Box<[OnceLock<Counter>]>,
    requests_rejected: Counter,
    goaways: Family<Label<&'static str>, Counter>,
    closes: Family<Label<&'static str>, Counter>,
    peer_address_changes: Counter,
    early_requests: Family<Label<&'static str>, Counter>,
    zero_rtt_connections: Counter,
    cids: CidCounters,
    gue: GueCounters,
}

/// GUE mode's counters.
#[derive(Debug, Default)]
struct GueCounters {
    received: Counter,
    dropped: Family<Label<&'static str>, Counter>,
    sent: Family<Label<&'static str>, Counter>,
    send_dropped: Family<Label<&'static str>, Counter>,
    routes_forgotten: Counter,
    return_fallbacks: Counter,
}

/// The status codes whose counters are cached.
const CACHED_STATUSES: std::ops::RangeInclusive<u16> = 100..=599;

impl Default for Inner {
    fn default() -> Self {
        Self {
            active_connections: Gauge::default(),
            handshakes: Family::default(),
            connections_refused: Counter::default(),
            requests: Family::default(),
            requests_by_status: CACHED_STATUSES.map(|_| OnceLock::new()).collect(),
            requests_rejected: Counter::default(),
            goaways: Family::default(),
            closes: Family::default(),
            peer_address_changes: Counter::default(),
            early_requests: Family::default(),
            zero_rtt_connections: Counter::default(),
            cids: CidCounters::default(),
            gue: GueCounters::default(),
        }
    }
}

/// Which GOAWAY of the two-phase shutdown was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GoawayKind {
    /// The first, with the maximum stream ID.
    Initial,
    /// The second, with the real boundary.
    Final,
}

impl Metrics {
    /// Registers every metric under the `qlb_server_` prefix.
    ///
    /// ```
    /// let mut registry = prometheus_client::registry::Registry::default();
    /// qlb_server::Metrics::default().register(&mut registry);
    /// ```
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("qlb_server");
        let metrics = &self.0;
        registry.register(
            "active_connections",
            "Established HTTP/3 connections",
            metrics.active_connections.clone(),
        );
        registry.register(
            "handshakes",
            "QUIC handshakes by result (ok, failed)",
            metrics.handshakes.clone(),
        );
        registry.register(
            "connections_refused",
            "Connection attempts refused because the server is draining",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "requests",
            "Requests whose handler finished, by response status",
            metrics.requests.clone(),
        );
        registry.register(
            "requests_rejected",
            "Requests reset with H3_REQUEST_REJECTED because they came after the final GOAWAY",
            metrics.requests_rejected.clone(),
        );
        registry.register(
            "goaways_sent",
            "HTTP/3 GOAWAY frames sent, by kind (initial: max stream ID, final: last request)",
            metrics.goaways.clone(),
        );
        registry.register(
            "connection_closes",
            "Connections ended, by reason",
            metrics.closes.clone(),
        );
        registry.register(
            "peer_address_changes",
            "Client address changes seen on a connection (migrations, NAT rebindings)",
            metrics.peer_address_changes.clone(),
        );
        registry.register(
            "early_requests",
            "Requests that arrived as 0-RTT early data, by outcome (served: handed to the \
             handler; too_early: answered 425, not safe to replay; held: waited for the \
             handshake, then served too)",
            metrics.early_requests.clone(),
        );
        registry.register(
            "zero_rtt_connections",
            "Connections on which requests arrived as 0-RTT early data (resumed sessions whose \
             early data this server accepted)",
            metrics.zero_rtt_connections.clone(),
        );
        registry.register(
            "cids_issued",
            "QUIC-LB connection IDs issued that route to this server",
            metrics.cids.routable.clone(),
        );
        registry.register(
            "failover_cids_issued",
            "Config-failover connection IDs issued after QUIC-LB nonce exhaustion",
            metrics.cids.failover.clone(),
        );
        registry.register(
            "stateless_resets_withheld",
            "Packets for a connection ID this server issued and no longer knows (late after \
             the peer retired it) dropped instead of answered with a stateless reset",
            metrics.cids.resets_withheld.clone(),
        );
        registry.register(
            "nonces_remaining",
            "QUIC-LB nonces left under the current configuration; at 0 the server issues \
             config-failover CIDs: install a new configuration well before",
            metrics.cids.nonces_remaining.clone(),
        );
        let gue = &metrics.gue;
        registry.register(
            "gue_received",
            "Datagrams decapsulated from the GUE socket and handed to QUIC",
            gue.received.clone(),
        );
        registry.register(
            "gue_dropped",
            "Datagrams received on the GUE socket and dropped, by reason (truncated, version, \
             control, protocol, not_udp, fragment, length: not a GUE packet carrying a UDP \
             datagram; empty; too_long: larger than QUIC's receive buffer)",
            gue.dropped.clone(),
        );
        registry.register(
            "gue_sent",
            "Datagrams sent to GUE clients, by return path (through_lb: encapsulated to the \
             load balancer; direct: from the VIP)",
            gue.sent.clone(),
        );
        registry.register(
            "gue_send_dropped",
            "Replies to GUE clients dropped, by reason (direct_bind: the VIP address cannot \
             be bound; encapsulation: the addresses cannot be encapsulated)",
            gue.send_dropped.clone(),
        );
        registry.register(
            "gue_routes_forgotten",
            "GUE clients forgotten by the full return map (their replies then take the \
             latest load balancer and VIP port until they send again)",
            gue.routes_forgotten.clone(),
        );
        registry.register(
            "gue_return_fallbacks",
            "Replies to GUE clients the return map did not know, sent by the fallback route",
            gue.return_fallbacks.clone(),
        );
    }

    /// Counts a handshake; returns a guard that holds the connection in the active gauge.
    pub(crate) fn handshake_completed(&self) -> ActiveConnection {
        self.handshake_succeeded();
        self.connection_started()
    }

    /// Counts a connection accepted in 0.5-RTT (its handshake is counted when it ends);
    /// returns a guard that holds it in the active gauge.
    pub(crate) fn connection_started(&self) -> ActiveConnection {
        self.0.active_connections.inc();
        ActiveConnection(self.0.active_connections.clone())
    }

    pub(crate) fn handshake_succeeded(&self) {
        self.0.handshakes.get_or_create(&[("result", "ok")]).inc();
    }

    pub(crate) fn zero_rtt_connection(&self) {
        self.0.zero_rtt_connections.inc();
    }

    pub(crate) fn early_request(&self, outcome: EarlyOutcome) {
        self.0
            .early_requests
            .get_or_create(&[("outcome", outcome.as_str())])
            .inc();
    }

    pub(crate) fn handshake_failed(&self) {
        self.0
            .handshakes
            .get_or_create(&[("result", "failed")])
            .inc();
    }

    /// The counters the CID generator feeds.
    pub(crate) fn cid_counters(&self) -> CidCounters {
        self.0.cids.clone()
    }

    pub(crate) fn connection_refused(&self) {
        self.0.connections_refused.inc();
    }

    pub(crate) fn request_answered(&self, status: http::StatusCode) {
        let status = status.as_u16();
        let family = &self.0.requests;
        let count = || family.get_or_create(&[("status", status)]).clone();
        match self
            .0
            .requests_by_status
            .get(usize::from(status.wrapping_sub(*CACHED_STATUSES.start())))
        {
            Some(cached) => cached.get_or_init(count).inc(),
            None => count().inc(),
        };
    }

    pub(crate) fn request_rejected(&self) {
        self.0.requests_rejected.inc();
    }

    pub(crate) fn goaway_sent(&self, kind: GoawayKind) {
        let kind = match kind {
            GoawayKind::Initial => "initial",
            GoawayKind::Final => "final",
        };
        self.0.goaways.get_or_create(&[("kind", kind)]).inc();
    }

    pub(crate) fn connection_closed(&self, reason: CloseReason) {
        self.0
            .closes
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    pub(crate) fn peer_address_changed(&self) {
        self.0.peer_address_changes.inc();
    }

    pub(crate) fn gue_received(&self, datagrams: usize) {
        self.0.gue.received.inc_by(datagrams as u64);
    }

    pub(crate) fn gue_dropped(&self, reason: Dropped) {
        self.0
            .gue
            .dropped
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    /// `path` is `through_lb` or `direct`.
    pub(crate) fn gue_sent(&self, path: &'static str, datagrams: usize) {
        self.0
            .gue
            .sent
            .get_or_create(&[("path", path)])
            .inc_by(datagrams as u64);
    }

    pub(crate) fn gue_send_dropped(&self, reason: &'static str) {
        self.0
            .gue
            .send_dropped
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    pub(crate) fn gue_routes_forgotten(&self, clients: usize) {
        self.0.gue.routes_forgotten.inc_by(clients as u64);
    }

    pub(crate) fn gue_return_fallback(&self) {
        self.0.gue.return_fallbacks.inc();
    }
}

/// Decrements the active-connections gauge when the connection task ends.
#[derive(Debug)]
pub(crate) struct ActiveConnection(Gauge);

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(metrics: &Metrics) -> String {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        text
    }

    #[test]
    fn every_event_shows_in_the_text_format() {
        let metrics = Metrics::default();
        let active = metrics.handshake_completed();
        metrics.handshake_failed();
        metrics.connection_refused();
        metrics.request_answered(http::StatusCode::OK);
        metrics.request_answered(http::StatusCode::OK);
        metrics.request_answered(http::StatusCode::SERVICE_UNAVAILABLE);
        metrics.request_answered(http::StatusCode::from_u16(799).expect("valid"));
        metrics.request_rejected();
        metrics.goaway_sent(GoawayKind::Initial);
        metrics.goaway_sent(GoawayKind::Final);
        metrics.connection_closed(CloseReason::MaxAgeGrace);
        metrics.peer_address_changed();
        metrics.early_request(EarlyOutcome::Served);
        metrics.early_request(EarlyOutcome::TooEarly);
        metrics.zero_rtt_connection();
        metrics.0.cids.routable.inc();
        metrics.gue_received(3);
        metrics.gue_dropped(Dropped::Decap(qlb_gue::DecapError::Control));
        metrics.gue_dropped(Dropped::TooLong);
        metrics.gue_sent("through_lb", 2);
        metrics.gue_send_dropped("direct_bind");
        metrics.gue_routes_forgotten(5);
        metrics.gue_return_fallback();
        let text = encoded(&metrics);
        for line in [
            "qlb_server_active_connections 1",
            "qlb_server_handshakes_total{result=\"ok\"} 1",
            "qlb_server_handshakes_total{result=\"failed\"} 1",
            "qlb_server_connections_refused_total 1",
            "qlb_server_requests_total{status=\"200\"} 2",
            "qlb_server_requests_total{status=\"503\"} 1",
            "qlb_server_requests_total{status=\"799\"} 1",
            "qlb_server_requests_rejected_total 1",
            "qlb_server_goaways_sent_total{kind=\"initial\"} 1",
            "qlb_server_goaways_sent_total{kind=\"final\"} 1",
            "qlb_server_connection_closes_total{reason=\"max_age_grace\"} 1",
            "qlb_server_peer_address_changes_total 1",
            "qlb_server_cids_issued_total 1",
            "qlb_server_early_requests_total{outcome=\"served\"} 1",
            "qlb_server_early_requests_total{outcome=\"too_early\"} 1",
            "qlb_server_zero_rtt_connections_total 1",
            "qlb_server_failover_cids_issued_total 0",
            "qlb_server_gue_received_total 3",
            "qlb_server_gue_dropped_total{reason=\"control\"} 1",
            "qlb_server_gue_dropped_total{reason=\"too_long\"} 1",
            "qlb_server_gue_sent_total{path=\"through_lb\"} 2",
            "qlb_server_gue_send_dropped_total{reason=\"direct_bind\"} 1",
            "qlb_server_gue_routes_forgotten_total 5",
            "qlb_server_gue_return_fallbacks_total 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        drop(active);
        assert!(encoded(&metrics).contains("qlb_server_active_connections 0"));
    }
}
