//! Which backend serves a request: the backends and their standing, the pickers and the
//! peak-EWMA latency they weigh, active health checks and their thresholds.

pub(crate) mod backend;
pub(crate) mod balancer;
pub(crate) mod checker;
pub(crate) mod ewma;
pub(crate) mod health;
pub(crate) mod picker;
