//! The qlb load balancer routing core (in progress).
