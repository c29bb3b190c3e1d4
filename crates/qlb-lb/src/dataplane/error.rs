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
