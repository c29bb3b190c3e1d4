//! Which backend serves a request: the backends and their standing, the pickers (with the
//! consistent hashing of `affinity` and the load-report weights of `wrr`) and the peak-EWMA
//! latency they weigh, active health checks and their thresholds.

pub(crate) mod affinity;
pub(crate) mod aperture;
pub(crate) mod backend;
pub(crate) mod balancer;
pub(crate) mod checker;
pub(crate) mod ewma;
pub(crate) mod health;
pub(crate) mod outlier;
pub(crate) mod picker;
pub(crate) mod wrr;
