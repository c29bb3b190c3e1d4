//! The per-worker router: one datagram, its client address and the time in; a decision out.
//! It owns the flow tables and counters of its worker and reads the shared [`Pool`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use quic_lb::ConnectionId;

use crate::backend::{BackendIndex, BackendKey};
use crate::counters::{CounterSnapshot, Counters};
use crate::decision::{Decision, DropReason, Forward, Route};
use crate::header::{Header, LongPacketType};
use crate::pool::{Chosen, FallbackKey, Pool};
use crate::table::{IdleTable, TableLimits};

/// The smallest UDP payload that may carry a v1 or v2 Initial (RFC 9000 section 14.1).
const MIN_INITIAL_DATAGRAM: usize = 1200;
/// What a packet needs after its packet number offset: the packet number is taken as 4 octets
/// long for the 16-octet header-protection sample (RFC 9001 section 5.4.2).
const MIN_AFTER_PN_OFFSET: usize = 4 + 16;
/// The fixed octets of a v1 or v2 0-RTT or Handshake header apart from the CIDs: first octet,
/// version, the two CID lengths and a one-octet Length (RFC 9000 section 17.2).
const LONG_HEADER_FIXED: usize = 1 + 4 + 1 + 1 + 1;

/// Routes datagrams from clients to backends, sans-IO: no sockets, no threads, no clock.
///
/// Forwarding order (QUIC-LB section 4.2):
/// 1. a routable CID: the backend holding its server ID, if that backend is not down;
/// 2. the DCID table, then the 4-tuple table: the backend an earlier decision chose, if it is
///    still in the pool and not down (draining backends keep their flows). Initial and 0-RTT
///    packets skip the 4-tuple table: their client-chosen DCID identifies the handshake, while
///    one client port may carry many;
/// 3. the fallback: the Maglev table over backends that take new connections, keyed by the
///    DCID for long headers (so every packet of a client first flight, on any LB instance,
///    lands alike) and by the client address for short headers.
///
/// Decisions from 2 and 3 are recorded in both tables (when the DCID is known), so that a
/// handshake stays on its backend while the pool changes, and a NAT rebinding finds its
/// backend by DCID. One router serves one listening address: the tables key the 4-tuple by
/// the client's half.
///
/// ```
/// use qlb_router::{Backend, Pool, Route, Router};
/// use quic_lb::{Config, ConfigId, Decoder, Encoder};
/// use std::{sync::Arc, time::Instant};
///
/// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
/// let mut decoder = Decoder::new();
/// decoder.insert(config.clone());
/// let pool = Pool::new(decoder, [
///     Backend::new("a", "192.0.2.1:443".parse()?).with_server_id(config.id(), "0001".parse()?),
///     Backend::new("b", "192.0.2.2:443".parse()?).with_server_id(config.id(), "0002".parse()?),
/// ])?;
/// let mut router = Router::new(Arc::new(pool));
///
/// // A short header whose DCID backend "b" issued.
/// let cid = Encoder::new(config, "0002".parse()?)?.generate();
/// let mut datagram = vec![0x40];
/// datagram.extend_from_slice(&cid);
/// datagram.extend_from_slice(&[0; 24]);
/// let decision = router.route(&datagram, "198.51.100.7:5000".parse()?, Instant::now());
/// let forward = decision.forward().expect("routable");
/// assert_eq!((forward.address, forward.route), ("192.0.2.2:443".parse()?, Route::Cid));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Router {
    pool: Arc<Pool>,
    /// Unroutable DCID -> backend.
    dcid_table: IdleTable<ConnectionId, BackendKey>,
    /// Client address -> backend.
    tuple_table: IdleTable<SocketAddr, BackendKey>,
    counters: Counters,
}

impl Router {
    /// A router over `pool` with the default [`TableLimits`].
    ///
    /// ```
    /// use qlb_router::{Pool, Router};
    /// use std::sync::Arc;
    ///
    /// let router = Router::new(Arc::new(Pool::new(quic_lb::Decoder::new(), [])?));
    /// assert!(router.pool().backends().is_empty());
    /// # Ok::<(), qlb_router::PoolError>(())
    /// ```
    pub fn new(pool: Arc<Pool>) -> Self {
        Self::with_limits(pool, TableLimits::default())
    }

    /// A router over `pool` whose flow tables keep to `limits`.
    ///
    /// ```
    /// use qlb_router::{Pool, Router, TableLimits};
    /// use std::sync::Arc;
    ///
    /// let pool = Arc::new(Pool::new(quic_lb::Decoder::new(), [])?);
    /// let router = Router::with_limits(pool, TableLimits { capacity: 1024, ..Default::default() });
    /// # Ok::<(), qlb_router::PoolError>(())
    /// ```
    pub fn with_limits(pool: Arc<Pool>, limits: TableLimits) -> Self {
        Self {
            counters: Counters::new(&pool),
            pool,
            dcid_table: IdleTable::new(limits),
            tuple_table: IdleTable::new(limits),
        }
    }

    /// The pool decisions are made against; a [`Forward::backend`] indexes into it.
    ///
    /// ```
    /// use qlb_router::{Pool, Router};
    /// use std::sync::Arc;
    ///
    /// let pool = Arc::new(Pool::new(quic_lb::Decoder::new(), [])?);
    /// assert!(Arc::ptr_eq(Router::new(pool.clone()).pool(), &pool));
    /// # Ok::<(), qlb_router::PoolError>(())
    /// ```
    pub fn pool(&self) -> &Arc<Pool> {
        &self.pool
    }

    /// Replaces the pool. The flow tables stay: they remember backends by their name (hashed), and an entry
    /// whose backend has gone or is down is decided again.
    ///
    /// ```
    /// use qlb_router::{Backend, Pool, Router};
    /// use std::sync::Arc;
    ///
    /// let mut router = Router::new(Arc::new(Pool::new(quic_lb::Decoder::new(), [])?));
    /// let bigger = Pool::new(quic_lb::Decoder::new(), [Backend::new("a", "192.0.2.1:443".parse()?)])?;
    /// router.set_pool(Arc::new(bigger));
    /// assert_eq!(router.pool().backends().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_pool(&mut self, pool: Arc<Pool>) {
        self.counters.change_pool(&self.pool, &pool);
        self.pool = pool;
    }

    /// A copy of the counters.
    ///
    /// ```
    /// use qlb_router::{Pool, Router};
    /// use std::sync::Arc;
    ///
    /// let router = Router::new(Arc::new(Pool::new(quic_lb::Decoder::new(), [])?));
    /// assert_eq!(router.counters().decisions(), 0);
    /// # Ok::<(), qlb_router::PoolError>(())
    /// ```
    pub fn counters(&self) -> CounterSnapshot {
        self.counters.snapshot(&self.pool)
    }

    /// The backend the fallback picks for a client Initial `datagram` from `client`, recording
    /// and counting nothing: a Retry offload names it in its Retry's SCID instead of
    /// forwarding, and a stranger's token-less Initial must leave no state behind.
    ///
    /// ```
    /// use qlb_router::{Backend, Pool, Router};
    /// use std::sync::Arc;
    ///
    /// let pool = Pool::new(quic_lb::Decoder::new(), [Backend::new("b", "192.0.2.1:4433".parse()?)])?;
    /// let router = Router::new(Arc::new(pool));
    /// let initial = [0xc0, 0, 0, 0, 1, 4, 1, 2, 3, 4, 0, 0];
    /// assert_eq!(router.fallback_choice(&initial, "198.51.100.7:5000".parse()?).map(|b| b.get()), Some(0));
    /// assert_eq!(router.counters().decisions(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fallback_choice(&self, datagram: &[u8], client: SocketAddr) -> Option<BackendIndex> {
        let header = Header::parse(datagram, self.pool.decoder()).ok()?;
        let (index, _) = self.pool.fallback(fallback_key(&header, client))?;
        Some(index)
    }

    /// Decides where the datagram `datagram` from `client`, received at `now`, goes, and
    /// counts the decision. Never panics; CID-routed datagrams cost no allocation.
    ///
    /// ```
    /// use qlb_router::{DropReason, Decision, Pool, Router};
    /// use std::{sync::Arc, time::Instant};
    ///
    /// let mut router = Router::new(Arc::new(Pool::new(quic_lb::Decoder::new(), [])?));
    /// let decision = router.route(&[0xc0, 0, 0], "198.51.100.7:5000".parse()?, Instant::now());
    /// assert_eq!(decision, Decision::Drop(DropReason::Truncated));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn route(&mut self, datagram: &[u8], client: SocketAddr, now: Instant) -> Decision {
        let decision = self.decide(datagram, client, now);
        self.counters.count(&decision, datagram.len());
        decision
    }

    fn decide(&mut self, datagram: &[u8], client: SocketAddr, now: Instant) -> Decision {
        // Matched in place, not moved out: see `Pool::route_by_cid`.
        let parsed = Header::parse(datagram, self.pool.decoder());
        let header = match &parsed {
            Ok(header) => header,
            Err(error) => return Decision::Drop((*error).into()),
        };
        if let Some(reason) = refusal(header, datagram.len()) {
            return Decision::Drop(reason);
        }
        let by_cid = header.dcid().and_then(|dcid| self.pool.route_by_cid(dcid));
        let chosen = match by_cid {
            Some((backend, config_id)) => {
                self.counters.count_codepoint(config_id);
                Some((backend, Route::Cid))
            }
            None => self.route_unroutable(header, client, now),
        };
        match chosen {
            Some(((backend, chosen), route)) => Decision::Forward(Forward {
                backend,
                address: chosen.address(),
                route,
            }),
            None => Decision::Drop(DropReason::NoBackend),
        }
    }

    /// Steps 2 and 3 of the forwarding order, recording the outcome in the tables. Kept out of
    /// line so that the CID-routed path stays small.
    #[inline(never)]
    fn route_unroutable(
        &mut self,
        header: &Header<'_>,
        client: SocketAddr,
        now: Instant,
    ) -> Option<(Chosen<'_>, Route)> {
        let Self {
            pool,
            dcid_table,
            tuple_table,
            ..
        } = self;
        // Only DCIDs of known extent and QUIC v1 size are remembered; longer ones (unknown
        // versions) still have the 4-tuple table.
        let dcid_key = header
            .dcid()
            .filter(|dcid| !dcid.is_empty())
            .and_then(|dcid| ConnectionId::new(dcid).ok());
        let skips_tuple_table = matches!(
            header,
            Header::Long(long) if long.packet_type.has_client_chosen_dcid()
        );
        let remembered = |entry: Option<&BackendKey>| pool.serving(pool.find_key(*entry?)?);
        let by_dcid = || {
            Some((
                remembered(dcid_table.get(&dcid_key?, now))?,
                Route::DcidTable,
            ))
        };
        let by_tuple = || {
            if skips_tuple_table {
                return None;
            }
            Some((
                remembered(tuple_table.get(&client, now))?,
                Route::TupleTable,
            ))
        };
        let by_fallback = || {
            Some((
                pool.fallback(fallback_key(header, client))?,
                Route::Fallback,
            ))
        };
        let (chosen, route) = by_dcid().or_else(by_tuple).or_else(by_fallback)?;

        let key = chosen.1.key();
        if let Some(dcid) = dcid_key {
            dcid_table.insert(dcid, key, now);
        }
        tuple_table.insert(client, key, now);
        Some((chosen, route))
    }
}

/// Packets a client never sends, that servers must discard, or too short to be a packet of
/// their kind.
fn refusal(header: &Header<'_>, datagram_len: usize) -> Option<DropReason> {
    let long = match header {
        Header::Long(long) => long,
        // A DCID of unknown length (no configuration for its codepoint) counts as empty.
        Header::Short(short) => {
            let dcid_len = short.dcid.map_or(0, <[u8]>::len);
            return (datagram_len < 1 + dcid_len + MIN_AFTER_PN_OFFSET)
                .then_some(DropReason::TooShort);
        }
    };
    match long.packet_type {
        LongPacketType::VersionNegotiation => Some(DropReason::VersionNegotiation),
        LongPacketType::Retry => Some(DropReason::Retry),
        LongPacketType::Initial if datagram_len < MIN_INITIAL_DATAGRAM => {
            Some(DropReason::InitialTooSmall)
        }
        LongPacketType::ZeroRtt | LongPacketType::Handshake
            if datagram_len
                < LONG_HEADER_FIXED + long.dcid.len() + long.scid.len() + MIN_AFTER_PN_OFFSET =>
        {
            Some(DropReason::TooShort)
        }
        _ => None,
    }
}

/// What the fallback is keyed by: a long header's DCID, which the client keeps for its whole
/// first flight; otherwise (short header, empty DCID) the client address.
fn fallback_key<'a>(header: &Header<'a>, client: SocketAddr) -> FallbackKey<'a> {
    match header {
        Header::Long(long) if !long.dcid.is_empty() => FallbackKey::Dcid(long.dcid),
        _ => FallbackKey::Address(client),
    }
}
