//! The end-to-end harness: `qlb serve` backends and `qlb lb` instances as real processes on
//! loopback ([`cluster`]) with their HTTP endpoints ([`http`]), third-party clients
//! ([`peers`], over the test kit's), a fleet on etcd ([`fleet`]), and a UDP relay that plays an ECMP change ([`relay`]). Every wait has a
//! deadline and every child is killed on drop. Each test binary uses a different subset.
#![allow(dead_code)]

pub(crate) mod cluster;
pub(crate) mod delay;
pub(crate) mod fleet;
pub(crate) mod http;
pub(crate) mod load;
pub(crate) mod peers;
pub(crate) mod process;
pub(crate) mod relay;

pub(crate) use qlb_testkit::TestResult;
