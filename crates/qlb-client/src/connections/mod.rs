//! The connections to one backend: one connection's state and driver task, a request's hold
//! on it, the pool that opens and retires connections, the pure plan the pool follows, and
//! which server each connection reached (with the retiring of duplicates behind one VIP).

pub(crate) mod distinct;
pub(crate) mod identity;
pub(crate) mod lease;
pub(crate) mod plan;
pub(crate) mod pool;
pub(crate) mod shared;
