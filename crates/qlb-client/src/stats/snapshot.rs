//! What a client counts per backend, and the snapshot it hands out.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Why a pooled connection ended.
///
/// ```
/// use qlb_client::CloseReason;
///
/// assert_eq!(CloseReason::MaxLifetime.as_str(), "max_lifetime");
/// assert_eq!(CloseReason::ALL.len(), 6);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// It reached its max lifetime and was replaced.
    MaxLifetime,
    /// The server sent GOAWAY.
    GoAway,
    /// It stayed idle for the idle timeout.
    Idle,
    /// Its backend left the target (or the client was dropped).
    Removed,
    /// It closed without being drained: the peer closed it, it timed out, or failed.
    Lost,
    /// It reached the same server as another connection of its pool, in distinct-backends
    /// mode, and was replaced.
    Duplicate,
}

impl CloseReason {
    /// Every reason, in a fixed order.
    ///
    /// ```
    /// assert!(qlb_client::CloseReason::ALL.contains(&qlb_client::CloseReason::Idle));
    /// ```
    pub const ALL: [CloseReason; 6] = [
        Self::MaxLifetime,
        Self::GoAway,
        Self::Idle,
        Self::Removed,
        Self::Lost,
        Self::Duplicate,
    ];

    /// The reason as a metric label.
    ///
    /// ```
    /// assert_eq!(qlb_client::CloseReason::GoAway.as_str(), "goaway");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MaxLifetime => "max_lifetime",
            Self::GoAway => "goaway",
            Self::Idle => "idle",
            Self::Removed => "removed",
            Self::Lost => "lost",
            Self::Duplicate => "duplicate",
        }
    }

    fn index(self) -> usize {
        Self::ALL
            .iter()
            .position(|reason| *reason == self)
            .unwrap_or_default()
    }
}

/// Connections closed, by reason.
///
/// ```
/// use qlb_client::{CloseCounts, CloseReason};
///
/// let counts = CloseCounts::default();
/// assert_eq!(counts.get(CloseReason::Idle), 0);
/// assert_eq!(counts.total(), 0);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CloseCounts([u64; 6]);

impl CloseCounts {
    /// Closes for `reason`.
    ///
    /// ```
    /// # let counts = qlb_client::CloseCounts::default();
    /// let lost = counts.get(qlb_client::CloseReason::Lost);
    /// ```
    pub fn get(&self, reason: CloseReason) -> u64 {
        self.0[reason.index()]
    }

    /// Closes for any reason.
    ///
    /// ```
    /// assert_eq!(qlb_client::CloseCounts::default().total(), 0);
    /// ```
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// One backend's numbers at one moment.
///
/// ```no_run
/// # async fn demo(client: qlb_client::Client) {
/// for backend in client.snapshot().backends {
///     println!("{}: {} requests, {} errors, {} in flight", backend.addr, backend.requests,
///              backend.errors, backend.in_flight);
/// }
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct BackendSnapshot {
    /// The backend.
    pub addr: SocketAddr,
    /// Whether health checks (if any) find it healthy.
    pub healthy: bool,
    /// Whether its last connection attempt failed (it is avoided while others work).
    pub failing: bool,
    /// Requests in flight on it now.
    pub in_flight: u64,
    /// Requests sent to it (each attempt counts, a retry too).
    pub requests: u64,
    /// Attempts that failed on it (before or after sending), timeouts included.
    pub errors: u64,
    /// Connections open now (taking requests or draining).
    pub connections_open: u64,
    /// Connections opened.
    pub connections_opened: u64,
    /// Connection attempts that failed.
    pub connect_failures: u64,
    /// Connections closed, by reason.
    pub connections_closed: CloseCounts,
    /// Connections retired (max lifetime, GOAWAY) while they were needed, so that a new one
    /// took over.
    pub replacements: u64,
    /// Connections opened with a session ticket (resuming, 0-RTT attempted).
    pub resumed: u64,
    /// Resuming connections whose 0-RTT early data the server accepted.
    pub zero_rtt_accepted: u64,
    /// Resuming connections whose 0-RTT early data the server refused (a full handshake
    /// followed; their early requests were sent again).
    pub zero_rtt_rejected: u64,
    /// Its peak-EWMA latency estimate (response headers), if measured.
    pub latency: Option<Duration>,
    /// The servers its connections reached, as their responses named them (sorted, one
    /// entry per connection that knows).
    pub server_ids: Vec<String>,
    /// Its weight from its load reports (`wrr`), once usable (after the blackout period).
    pub weight: Option<f64>,
    /// Whether outlier detection has it ejected now.
    pub ejected: bool,
    /// Times outlier detection ejected it.
    pub ejections: u64,
}

/// A client's numbers at one moment: [`Client::snapshot`](crate::Client::snapshot).
///
/// ```no_run
/// # async fn demo(client: qlb_client::Client) {
/// let snapshot = client.snapshot();
/// println!("{} requests, {} retried", snapshot.requests(), snapshot.retries);
/// # }
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ClientSnapshot {
    /// The backends of the target now (after subsetting).
    pub backends: Vec<BackendSnapshot>,
    /// Attempts sent again on another connection after a rejection or GOAWAY (a request
    /// that never left the client may be sent again more than once).
    pub retries: u64,
    /// The backends in the `aperture` picker's window now: its load-sized aperture, or more
    /// where the client's share of the ring (1 / clients) is wider (None with other
    /// pickers).
    pub aperture: Option<usize>,
}

impl ClientSnapshot {
    /// The numbers of one backend.
    ///
    /// ```
    /// let snapshot = qlb_client::ClientSnapshot::default();
    /// assert!(snapshot.backend("127.0.0.1:1".parse()?).is_none());
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn backend(&self, addr: SocketAddr) -> Option<&BackendSnapshot> {
        self.backends.iter().find(|backend| backend.addr == addr)
    }

    /// Backends ejected by outlier detection now.
    ///
    /// ```
    /// assert_eq!(qlb_client::ClientSnapshot::default().ejected(), 0);
    /// ```
    pub fn ejected(&self) -> usize {
        self.backends
            .iter()
            .filter(|backend| backend.ejected)
            .count()
    }

    /// Requests sent over all backends.
    ///
    /// ```
    /// assert_eq!(qlb_client::ClientSnapshot::default().requests(), 0);
    /// ```
    pub fn requests(&self) -> u64 {
        self.backends.iter().map(|backend| backend.requests).sum()
    }
}

/// The live counters behind a [`BackendSnapshot`].
#[derive(Debug, Default)]
pub(crate) struct BackendStats {
    pub(crate) in_flight: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) connections_opened: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    closed: [AtomicU64; 6],
    pub(crate) replacements: AtomicU64,
    pub(crate) resumed: AtomicU64,
    pub(crate) zero_rtt_accepted: AtomicU64,
    pub(crate) zero_rtt_rejected: AtomicU64,
}

impl BackendStats {
    pub(crate) fn closed(&self, reason: CloseReason) {
        self.closed[reason.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn close_counts(&self) -> CloseCounts {
        CloseCounts(std::array::from_fn(|index| {
            self.closed[index].load(Ordering::Relaxed)
        }))
    }
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Reads a counter.
pub(crate) fn read(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closes_are_counted_by_reason() {
        let stats = BackendStats::default();
        stats.closed(CloseReason::GoAway);
        stats.closed(CloseReason::GoAway);
        stats.closed(CloseReason::Lost);
        let counts = stats.close_counts();
        assert_eq!(counts.get(CloseReason::GoAway), 2);
        assert_eq!(counts.get(CloseReason::Lost), 1);
        assert_eq!(counts.get(CloseReason::MaxLifetime), 0);
        assert_eq!(counts.total(), 3);
        let labels: Vec<_> = CloseReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            labels,
            [
                "max_lifetime",
                "goaway",
                "idle",
                "removed",
                "lost",
                "duplicate"
            ]
        );
    }
}
