//! Why the data plane could not start, or failed.

use std::io;
use std::net::SocketAddr;

use thiserror::Error;

/// Why the data plane could not start, or failed.
///
/// ```
/// use qlb_lb::dataplane::{Dataplane, DataplaneError, DataplaneOptions};
/// use std::{num::NonZeroUsize, sync::Arc};
///
/// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
/// let err = Dataplane::start(&[], NonZeroUsize::MIN, pool, DataplaneOptions::default())
///     .unwrap_err();
/// assert!(matches!(err, DataplaneError::NoListenAddress));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataplaneError {
    /// No listening address was given.
    #[error("listen: at least one address is required")]
    NoListenAddress,
    /// A listening address was given twice.
    #[error("listen: {address} is given twice")]
    DuplicateListenAddress {
        /// The address.
        address: SocketAddr,
    },
    /// A listening address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// `gue` mode's port range is empty, too long or runs past port 65535.
    #[error("gue.ports: {ports} ports from {bind} do not fit 1..=256 ports up to 65535")]
    GuePorts {
        /// The first GUE address.
        bind: SocketAddr,
        /// How many ports were asked for.
        ports: u16,
    },
    /// A GUE port is also a listening address: the two would split its datagrams.
    #[error("gue.bind: the GUE ports from {bind} include the listening address {listen}")]
    GueOverlap {
        /// The first GUE address.
        bind: SocketAddr,
        /// The listening address it shares.
        listen: SocketAddr,
    },
    /// A GUE address could not be bound.
    #[error("gue.bind: cannot bind {address}: {source}")]
    GueBind {
        /// The address.
        address: SocketAddr,
        /// What the operating system said.
        source: io::Error,
    },
    /// A worker could not be set up or started, or its event loop failed.
    #[error("data plane worker {worker}: {source}")]
    Worker {
        /// The worker's number, from 0.
        worker: usize,
        /// What the operating system said.
        source: io::Error,
    },
    /// A worker thread panicked (a bug).
    #[error("data plane worker {worker} panicked")]
    WorkerPanicked {
        /// The worker's number, from 0.
        worker: usize,
    },
}
