//! The connections to one backend: one connection's state and driver task, a request's hold
//! on it, the pool that opens and retires connections, and the pure plan the pool follows.

pub(crate) mod lease;
pub(crate) mod plan;
pub(crate) mod pool;
pub(crate) mod shared;
