//! The data plane's settings, as plain values: it knows nothing of the configuration file.

use std::time::Duration;

use qlb_router::TableLimits;

use super::gue::GueOptions;
use super::kernel::KernelPathOptions;
use super::retry::RetryOffload;

/// Settings of a [`Dataplane`](super::Dataplane) beyond its addresses, workers and pool.
///
/// ```
/// use qlb_lb::dataplane::DataplaneOptions;
/// use std::time::Duration;
///
/// let options = DataplaneOptions { max_flows: 1024, ..DataplaneOptions::default() };
/// assert_eq!(options.flow_idle_timeout, Duration::from_secs(60));
/// assert_eq!(options.max_unconfirmed_flows, 4096);
/// assert!(options.gue.is_none(), "proxy mode");
/// ```
#[derive(Clone, Debug)]
pub struct DataplaneOptions {
    /// A flow without traffic in either direction for this long is forgotten and its
    /// upstream socket closed. Default 60 s.
    pub flow_idle_timeout: Duration,
    /// The most flows per worker; 0 refuses every flow. Default 65536. When full, a new flow
    /// evicts the least recently used unconfirmed flow, and is refused if there is none. Each
    /// flow holds a socket: the process's file descriptor limit must allow
    /// `workers * max_flows` and some.
    pub max_flows: usize,
    /// The most unconfirmed flows per worker (flows whose backend has not answered yet; anyone
    /// can make them with spoofed sources), at most `max_flows`; 0 refuses every flow. When
    /// this many are unconfirmed, a new flow evicts the least recently used unconfirmed one.
    /// Default [`DEFAULT_MAX_UNCONFIRMED_FLOWS`].
    pub max_unconfirmed_flows: usize,
    /// The size and idle timeout of each router's DCID and 4-tuple tables.
    pub table_limits: TableLimits,
    /// Retry offload; `None` (the default) forwards every Initial.
    pub retry: Option<RetryOffload>,
    /// `gue` mode: client datagrams leave encapsulated through these GUE sockets, and the
    /// backends' encapsulated replies come back on them; no flows. `None` (the default):
    /// `proxy` mode, and the flow settings above apply.
    pub gue: Option<GueOptions>,
    /// `xdp` mode (with `gue`): the XDP program on this interface decides and encapsulates
    /// in the kernel, and passes up what it cannot decide; if it cannot be loaded or
    /// attached, the data plane runs as in `gue` mode and says why
    /// ([`DataplaneHandle::kernel_path`](super::DataplaneHandle::kernel_path)).
    pub xdp: Option<KernelPathOptions>,
}

/// The default [`DataplaneOptions::max_unconfirmed_flows`]. A real client's flow is
/// unconfirmed for one round trip to its backend; a flood evicts it only by opening this many
/// flows meanwhile, and a worker opens about 10,000 a second (some 0.1 ms each), so only a
/// backend slower than 400 ms to answer loses clients to a flood (an evicted handshake is
/// lost: its next packets reach the backend from another port). Spoofed sources hold at
/// most this many sockets per worker, 1/16 of the default `max_flows`, leaving the rest to
/// confirmed flows.
pub const DEFAULT_MAX_UNCONFIRMED_FLOWS: usize = 4096;

impl Default for DataplaneOptions {
    fn default() -> Self {
        Self {
            flow_idle_timeout: Duration::from_secs(60),
            max_flows: 1 << 16,
            max_unconfirmed_flows: DEFAULT_MAX_UNCONFIRMED_FLOWS,
            table_limits: TableLimits::default(),
            retry: None,
            gue: None,
            xdp: None,
        }
    }
}
