//! The test support every qlb crate's tests share, in one place: the result type
//! ([`TestResult`]), tracing for test output ([`init_tracing`]), waiting with deadlines
//! ([`eventually`], [`within`]), the QUIC-LB test configurations ([`fixtures`]), a self-signed
//! identity with quinn server and client configurations ([`SelfSigned`]), an HTTP/3 test
//! client ([`H3Client`]), the third-party peers ([`peers`]: aioquic, ngtcp2), headless
//! Chromium over the DevTools protocol ([`chromium`]) and network namespaces ([`netns`]).
//!
//! It depends on no qlb crate above `quic-lb`, so any crate's tests can use it without a
//! circle. Not published: it exists for the tests.
//!
//! ```
//! use std::time::Duration;
//! use qlb_testkit::{TestResult, eventually};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> TestResult {
//! let mut polls = 0;
//! eventually(Duration::from_secs(1), "three polls", || {
//!     polls += 1;
//!     polls == 3
//! })
//! .await?;
//! # Ok(())
//! # }
//! ```

pub mod chromium;
mod etcd;
pub mod fixtures;
mod h3_client;
mod identity;
pub mod netns;
pub mod peers;
mod trace;
mod wait;

pub use etcd::{ETCD_USER, Etcd, etcd_available};
pub use h3_client::{H3Client, Reply, SendRequest, closed_with, fetch, transport};
pub use identity::SelfSigned;
pub use trace::init_tracing;
pub use wait::{Condition, Polled, eventually, eventually_blocking, poll_blocking, within};

/// Any error, as tests propagate them with `?`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What a test or a test helper returns.
pub type TestResult<T = ()> = Result<T, BoxError>;
