//! The program's per-CPU counters (`enum qlb_counter` in `bpf/layout.h`), summed over CPUs.

use qlb_router::{DropReason, Route};

/// One counter of the program.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum Counter {
    /// Forwarded: a routable CID named the backend.
    Cid,
    /// Forwarded: the DCID table remembered the backend.
    DcidTable,
    /// Forwarded: the 4-tuple table remembered the backend.
    TupleTable,
    /// Forwarded: the Maglev fallback chose the backend.
    Fallback,
    /// Dropped: an empty datagram.
    DropEmpty,
    /// Dropped: the datagram ends inside the QUIC header.
    DropTruncated,
    /// Dropped: a v1 or v2 connection ID longer than 20 octets.
    DropCidTooLong,
    /// Dropped: a Version Negotiation packet, which only servers send.
    DropVersionNegotiation,
    /// Dropped: a Retry, which only servers send.
    DropRetry,
    /// Dropped: an Initial in a datagram under 1200 octets.
    DropInitialTooSmall,
    /// Dropped: too short for its packet type.
    DropTooShort,
    /// Dropped: no backend takes it.
    DropNoBackend,
    /// Passed up: an IPv4 header with options.
    PassIpOptions,
    /// Passed up: an IP fragment.
    PassFragment,
    /// Passed up: UDP length and IP length disagree, or the frame is short.
    PassMalformed,
    /// Passed up: IPv4 UDP without a checksum.
    PassNoChecksum,
    /// Passed up: a long-header DCID longer than 20 octets (unknown versions).
    PassLongDcid,
    /// Passed up: an Initial, for the daemon's Retry offload.
    PassInitial,
    /// Passed up: the backend's address family is not the GUE source's.
    PassFamily,
    /// Passed up: no route or no neighbour to the backend yet.
    PassNoRoute,
    /// Passed up: forwarding is off on the interface (`net.ipv4.conf.<interface>.forwarding`,
    /// `net.ipv6.conf.<interface>.forwarding`), which the route lookup requires.
    PassForwardingOff,
    /// Passed up: the encapsulated packet would exceed the route's MTU.
    PassTooBig,
    /// Passed up: no headroom to encapsulate in.
    PassNoRoom,
    /// CID-routed packets by codepoint (0 to 7).
    Codepoint(u8),
}

/// What a counter counts, in `qlb-router`'s terms where they mean the same.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
#[non_exhaustive]
pub enum CounterKind {
    /// Datagrams forwarded by this route.
    Routed(Route),
    /// Datagrams dropped for this reason.
    Dropped(DropReason),
    /// Datagrams passed up to the userspace data plane, and why (a stable snake_case label).
    Passed(&'static str),
    /// CID-routed datagrams under this codepoint.
    Codepoint(u8),
}

impl Counter {
    /// What it counts.
    ///
    /// ```
    /// use qlb_xdp::{Counter, CounterKind};
    ///
    /// assert_eq!(Counter::Fallback.kind(), CounterKind::Routed(qlb_router::Route::Fallback));
    /// assert_eq!(Counter::PassNoRoute.kind(), CounterKind::Passed("no_route"));
    /// ```
    pub fn kind(self) -> CounterKind {
        use CounterKind::{Dropped, Passed, Routed};
        match self {
            Self::Cid => Routed(Route::Cid),
            Self::DcidTable => Routed(Route::DcidTable),
            Self::TupleTable => Routed(Route::TupleTable),
            Self::Fallback => Routed(Route::Fallback),
            Self::DropEmpty => Dropped(DropReason::Empty),
            Self::DropTruncated => Dropped(DropReason::Truncated),
            Self::DropCidTooLong => Dropped(DropReason::CidTooLong),
            Self::DropVersionNegotiation => Dropped(DropReason::VersionNegotiation),
            Self::DropRetry => Dropped(DropReason::Retry),
            Self::DropInitialTooSmall => Dropped(DropReason::InitialTooSmall),
            Self::DropTooShort => Dropped(DropReason::TooShort),
            Self::DropNoBackend => Dropped(DropReason::NoBackend),
            Self::PassIpOptions => Passed("ip_options"),
            Self::PassFragment => Passed("fragment"),
            Self::PassMalformed => Passed("malformed"),
            Self::PassNoChecksum => Passed("no_checksum"),
            Self::PassLongDcid => Passed("long_dcid"),
            Self::PassInitial => Passed("initial"),
            Self::PassFamily => Passed("family"),
            Self::PassNoRoute => Passed("no_route"),
            Self::PassForwardingOff => Passed("forwarding_off"),
            Self::PassTooBig => Passed("too_big"),
            Self::PassNoRoom => Passed("no_room"),
            Self::Codepoint(codepoint) => CounterKind::Codepoint(codepoint),
        }
    }

    /// Every counter, in map order.
    pub const ALL: [Counter; 31] = [
        Self::Cid,
        Self::DcidTable,
        Self::TupleTable,
        Self::Fallback,
        Self::DropEmpty,
        Self::DropTruncated,
        Self::DropCidTooLong,
        Self::DropVersionNegotiation,
        Self::DropRetry,
        Self::DropInitialTooSmall,
        Self::DropTooShort,
        Self::DropNoBackend,
        Self::PassIpOptions,
        Self::PassFragment,
        Self::PassMalformed,
        Self::PassNoChecksum,
        Self::PassLongDcid,
        Self::PassInitial,
        Self::PassFamily,
        Self::PassNoRoute,
        Self::PassForwardingOff,
        Self::PassTooBig,
        Self::PassNoRoom,
        Self::Codepoint(0),
        Self::Codepoint(1),
        Self::Codepoint(2),
        Self::Codepoint(3),
        Self::Codepoint(4),
        Self::Codepoint(5),
        Self::Codepoint(6),
        Self::Codepoint(7),
    ];

    /// Its index in `qlb_counters`.
    pub(crate) fn index(self) -> u32 {
        match self {
            Self::Codepoint(codepoint) => 23 + u32::from(codepoint & 7),
            other => Self::ALL
                .iter()
                .position(|&counter| counter == other)
                .map_or(0, |at| at as u32),
        }
    }
}

/// The counters' totals over all CPUs.
///
/// ```
/// let counters = qlb_xdp::XdpCounters::default();
/// assert_eq!(counters.get(qlb_xdp::Counter::Cid), 0);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XdpCounters {
    pub(crate) values: [u64; 31],
}

impl XdpCounters {
    /// The total of `counter`.
    pub fn get(&self, counter: Counter) -> u64 {
        self.values
            .get(counter.index() as usize)
            .copied()
            .unwrap_or(0)
    }

    /// Datagrams forwarded, by any route.
    pub fn forwarded(&self) -> u64 {
        [
            Counter::Cid,
            Counter::DcidTable,
            Counter::TupleTable,
            Counter::Fallback,
        ]
        .into_iter()
        .map(|counter| self.get(counter))
        .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_follow_the_c_enum() {
        for (index, counter) in (0u32..).zip(Counter::ALL) {
            assert_eq!(counter.index(), index, "{counter:?}");
        }
    }
}
