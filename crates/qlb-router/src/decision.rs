//! What the router decides for a datagram: forward it to a backend, saying how that backend
//! was chosen, or drop it, saying why.

use std::net::SocketAddr;

use crate::backend::BackendIndex;
use crate::header::HeaderError;

/// The router's decision for one datagram.
///
/// ```
/// use qlb_router::{Decision, DropReason};
///
/// let decision = Decision::Drop(DropReason::NoBackend);
/// assert_eq!(decision.forward(), None);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[must_use = "a decision names what to do with the datagram"]
pub enum Decision {
    /// Send the datagram, unchanged, to a backend.
    Forward(Forward),
    /// Discard the datagram.
    Drop(DropReason),
}

impl Decision {
    /// The forwarding, if the decision is to forward.
    ///
    /// ```
    /// use qlb_router::{Backend, Pool, Route, Router};
    /// use std::{sync::Arc, time::Instant};
    ///
    /// let pool = Pool::new(quic_lb::Decoder::new(), [Backend::new("a", "192.0.2.1:443".parse()?)])?;
    /// let mut router = Router::new(Arc::new(pool));
    /// // A short header of a codepoint without configuration: 21 octets at least.
    /// let datagram = [0x40; 32];
    /// let decision = router.route(&datagram, "198.51.100.7:5000".parse()?, Instant::now());
    /// assert_eq!(decision.forward().map(|f| f.route), Some(Route::Fallback));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn forward(&self) -> Option<&Forward> {
        match self {
            Decision::Forward(forward) => Some(forward),
            Decision::Drop(_) => None,
        }
    }
}

/// Where to forward a datagram, and how the backend was chosen.
///
/// ```
/// use qlb_router::{Backend, Pool, Route, Router};
/// use std::{sync::Arc, time::Instant};
///
/// let pool = Pool::new(quic_lb::Decoder::new(), [Backend::new("a", "192.0.2.1:443".parse()?)])?;
/// let mut router = Router::new(Arc::new(pool));
/// let decision = router.route(&[0x40; 32], "198.51.100.7:5000".parse()?, Instant::now());
/// let forward = decision.forward().expect("one backend");
/// assert_eq!(forward.address, "192.0.2.1:443".parse()?);
/// assert_eq!(router.pool().backend(forward.backend).map(|b| b.name()), Some("a"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Forward {
    /// The backend, in the router's current [`Pool`](crate::Pool).
    pub backend: BackendIndex,
    /// The backend's address.
    pub address: SocketAddr,
    /// How the backend was chosen.
    pub route: Route,
}

/// How a backend was chosen, in the forwarding order of QUIC-LB section 4.2.
///
/// ```
/// use qlb_router::Route;
///
/// let labels: Vec<&str> = Route::ALL.iter().map(|r| r.as_str()).collect();
/// assert_eq!(labels, ["cid", "dcid_table", "tuple_table", "fallback"]);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Route {
    /// The DCID is a routable QUIC-LB connection ID of a backend that serves connections.
    Cid,
    /// The table of unroutable DCIDs remembered the backend.
    DcidTable,
    /// The table of 4-tuples (client address and port; the local half is the router's own)
    /// remembered the backend.
    TupleTable,
    /// The Maglev table chose among the backends that take new connections.
    Fallback,
}

impl Route {
    /// Every route, in forwarding order.
    pub const ALL: [Route; 4] = [Self::Cid, Self::DcidTable, Self::TupleTable, Self::Fallback];

    /// A stable snake_case label, for metrics and logs.
    ///
    /// ```
    /// assert_eq!(qlb_router::Route::TupleTable.as_str(), "tuple_table");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cid => "cid",
            Self::DcidTable => "dcid_table",
            Self::TupleTable => "tuple_table",
            Self::Fallback => "fallback",
        }
    }
}

/// Why a datagram is dropped.
///
/// ```
/// use qlb_router::{DropReason, HeaderError};
///
/// assert_eq!(DropReason::from(HeaderError::Truncated), DropReason::Truncated);
/// assert_eq!(DropReason::InitialTooSmall.as_str(), "initial_too_small");
/// assert_eq!(DropReason::TooShort.as_str(), "too_short");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DropReason {
    /// A zero-length datagram.
    Empty,
    /// The datagram ends inside the QUIC header.
    Truncated,
    /// A v1 or v2 long header with a connection ID over 20 octets.
    CidTooLong,
    /// A Version Negotiation packet: only servers send them.
    VersionNegotiation,
    /// A Retry packet: only servers send them.
    Retry,
    /// A v1 or v2 Initial in a datagram under 1200 octets, which servers must discard
    /// (RFC 9000 section 14.1); dropping it here spares the backends and the flow tables.
    InitialTooSmall,
    /// A short header, or a v1 or v2 0-RTT or Handshake packet, too short to hold the
    /// 16-octet header-protection sample 4 octets after its packet number offset
    /// (RFC 9001 section 5.4.2): no endpoint could decrypt it. Dropped before any flow state
    /// is made for it.
    TooShort,
    /// Nothing routes the datagram and no backend takes new connections.
    NoBackend,
}

impl DropReason {
    /// Every reason.
    pub const ALL: [DropReason; 8] = [
        Self::Empty,
        Self::Truncated,
        Self::CidTooLong,
        Self::VersionNegotiation,
        Self::Retry,
        Self::InitialTooSmall,
        Self::TooShort,
        Self::NoBackend,
    ];

    /// A stable snake_case label, for metrics and logs.
    ///
    /// ```
    /// assert_eq!(qlb_router::DropReason::NoBackend.as_str(), "no_backend");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Truncated => "truncated",
            Self::CidTooLong => "cid_too_long",
            Self::VersionNegotiation => "version_negotiation",
            Self::Retry => "retry",
            Self::InitialTooSmall => "initial_too_small",
            Self::TooShort => "too_short",
            Self::NoBackend => "no_backend",
        }
    }
}

impl From<HeaderError> for DropReason {
    fn from(error: HeaderError) -> Self {
        match error {
            HeaderError::Empty => Self::Empty,
            HeaderError::Truncated => Self::Truncated,
            HeaderError::CidTooLong(_) => Self::CidTooLong,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters index by position in `ALL` and export by label: both must be complete and
    /// unique, and a label is snake_case.
    #[test]
    fn labels_are_unique_snake_case_and_in_order() {
        let labels: Vec<&str> = Route::ALL
            .iter()
            .map(|r| r.as_str())
            .chain(DropReason::ALL.iter().map(|d| d.as_str()))
            .collect();
        let unique: std::collections::HashSet<_> = labels.iter().collect();
        assert_eq!(unique.len(), labels.len());
        for label in labels {
            assert!(
                label.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
                "{label}"
            );
        }
        for (position, route) in Route::ALL.iter().enumerate() {
            assert_eq!(*route as usize, position);
        }
        for (position, reason) in DropReason::ALL.iter().enumerate() {
            assert_eq!(*reason as usize, position);
        }
    }
}
