//! What became of the clients' connections, and how they resumed sessions: summed over
//! every client's snapshot at the end of a run.

use qlb_client::{ClientSnapshot, CloseReason};
use serde::Serialize;

/// The clients' connections by fate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Connections {
    /// Opened.
    pub opened: u64,
    /// Closed because the server sent GOAWAY (a drain, its max connection age).
    pub goaway: u64,
    /// Closed by the client's own rules: max lifetime, idle, backend removed.
    pub retired: u64,
    /// Closed without a drain: the connection broke.
    pub lost: u64,
}

/// Connections that resumed a session, and what became of their 0-RTT early data
/// (`resumed` = `zero_rtt_accepted` + `zero_rtt_rejected` once every handshake is over).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Resumption {
    /// Connections opened with a session ticket (0-RTT attempted).
    pub resumed: u64,
    /// Of those, the ones whose early data the server accepted.
    pub zero_rtt_accepted: u64,
    /// The ones whose early data the server refused (full handshake; requests sent again).
    pub zero_rtt_rejected: u64,
}

impl Connections {
    /// The sum over `snapshots`, one per client.
    pub(crate) fn of(snapshots: &[ClientSnapshot]) -> Self {
        let mut total = Self::default();
        for backend in snapshots.iter().flat_map(|snapshot| &snapshot.backends) {
            let closed = &backend.connections_closed;
            total.opened += backend.connections_opened;
            total.goaway += closed.get(CloseReason::GoAway);
            total.retired += closed.get(CloseReason::MaxLifetime)
                + closed.get(CloseReason::Idle)
                + closed.get(CloseReason::Removed);
            total.lost += closed.get(CloseReason::Lost);
        }
        total
    }
}

impl Resumption {
    /// The sum over `snapshots`, one per client.
    pub(crate) fn of(snapshots: &[ClientSnapshot]) -> Self {
        let mut total = Self::default();
        for backend in snapshots.iter().flat_map(|snapshot| &snapshot.backends) {
            total.resumed += backend.resumed;
            total.zero_rtt_accepted += backend.zero_rtt_accepted;
            total.zero_rtt_rejected += backend.zero_rtt_rejected;
        }
        total
    }
}
