//! The qlb load balancer's routing core, sans-IO in the manner of quinn-proto: a datagram, the
//! client's address and the current time go in; a [`Decision`] comes out. No sockets, no
//! threads, no clock reads: the daemon (`qlb-lb`) does the I/O and calls [`Router::route`].
//!
//! * [`Header`] reads QUIC headers: the version-invariant fields of RFC 8999 and the
//!   long-header types of QUIC v1 and v2. Short-header DCID lengths come from the QUIC-LB
//!   configurations.
//! * [`Pool`] is an immutable, validated backend set: [`Backend`]s sorted by name, the
//!   [`quic_lb::Decoder`], server ID maps and a weighted Maglev table. Built in the control
//!   plane, shared with `Arc`.
//! * [`Router`] is per worker: it routes by QUIC-LB connection ID, then by its bounded flow
//!   tables, then by the Maglev fallback, and counts every decision ([`CounterSnapshot`]).
//!
//! ```
//! use qlb_router::{Backend, BackendState, Pool, Route, Router};
//! use quic_lb::{Config, ConfigId, Decoder};
//! use std::{sync::Arc, time::Instant};
//!
//! let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
//! let mut decoder = Decoder::new();
//! decoder.insert(config.clone());
//! let backends = |b_state| [
//!     Backend::new("a", "192.0.2.1:443".parse().unwrap()).with_server_id(config.id(), "0001".parse().unwrap()),
//!     Backend::new("b", "192.0.2.2:443".parse().unwrap()).with_server_id(config.id(), "0002".parse().unwrap())
//!         .with_state(b_state),
//! ];
//! let mut router = Router::new(Arc::new(Pool::new(decoder.clone(), backends(BackendState::Active))?));
//!
//! // A client's first Initial: client-chosen DCID, so the Maglev fallback decides.
//! let mut initial = vec![0xc0, 0, 0, 0, 1, 8, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0];
//! initial.resize(1200, 0);
//! let client = "198.51.100.7:5000".parse()?;
//! let first = *router.route(&initial, client, Instant::now()).forward().expect("routed");
//! assert_eq!(first.route, Route::Fallback);
//!
//! // The pool changes mid-handshake (the chosen backend starts draining): the retransmitted
//! // Initial stays on its backend, by the DCID table.
//! let chosen = router.pool().backend(first.backend).expect("in pool").name().to_owned();
//! let drained = backends(BackendState::Active).map(|b| {
//!     if b.name() == chosen { b.with_state(BackendState::Draining) } else { b }
//! });
//! router.set_pool(Arc::new(Pool::new(decoder, drained)?));
//! let again = *router.route(&initial, client, Instant::now()).forward().expect("routed");
//! assert_eq!((again.address, again.route), (first.address, Route::DcidTable));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod backend;
mod counters;
mod decision;
mod hash;
mod header;
mod maglev;
mod pool;
mod router;
mod server_ids;
mod table;

pub use backend::{Backend, BackendIndex, BackendState};
pub use counters::{CounterSnapshot, Traffic};
pub use decision::{Decision, DropReason, Forward, Route};
pub use hash::HashKey;
pub use header::{
    Header, HeaderError, LongHeader, LongPacketType, QUIC_V1, QUIC_V2, ShortHeader,
    VERSION_NEGOTIATION,
};
pub use pool::{Pool, PoolError};
pub use router::Router;
pub use table::TableLimits;
