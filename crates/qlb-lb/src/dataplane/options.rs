//! The data plane's settings, as plain values: it knows nothing of the configuration file.

use std::time::Duration;

use qlb_router::TableLimits;

use super::retry::RetryOffload;

/// Settings of a [`Dataplane`](super::Dataplane) beyond its addresses, workers and pool.
///
/// ```
/// use qlb_lb::dataplane::DataplaneOptions;
/// use std::time::Duration;
///
/// let options = DataplaneOptions { max_flows: 1024, ..DataplaneOptions::default() };
/// assert_eq!(options.flow_idle_timeout, Duration::from_secs(60));
/// ```
#[derive(Clone, Debug)]
pub struct DataplaneOptions {
    /// A flow without traffic in either direction for this long is forgotten and its
    /// upstream socket closed. Default 60 s.
    pub flow_idle_timeout: Duration,
    /// The most flows per worker; 0 refuses every flow. Default 65536. Each flow holds a
    /// socket: the process's file descriptor limit must allow `workers * max_flows` and some.
    pub max_flows: usize,
    /// The size and idle timeout of each router's DCID and 4-tuple tables.
    pub table_limits: TableLimits,
    /// Retry offload; `None` (the default) forwards every Initial.
    pub retry: Option<RetryOffload>,
}

impl Default for DataplaneOptions {
    fn default() -> Self {
        Self {
            flow_idle_timeout: Duration::from_secs(60),
            max_flows: 1 << 16,
            table_limits: TableLimits::default(),
            retry: None,
        }
    }
}
