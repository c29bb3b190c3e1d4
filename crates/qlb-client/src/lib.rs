//! The HTTP/3 client side of qlb. So far: the health prober the load balancer runs against
//! its backends, and the TLS trust settings it shares with the coming client.
//!
//! ```
//! use qlb_client::{Prober, Trust};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let prober = Prober::new(&Trust::Insecure)?;
//! // A backend that does not answer fails its check within the timeout.
//! let check = prober
//!     .probe("127.0.0.1:9".parse()?, "localhost", "/healthz", Duration::from_millis(100))
//!     .await;
//! assert!(check.is_err());
//! # Ok(())
//! # }
//! ```

mod probe;
mod tls;

pub use probe::{ProbeError, ProbeOutcome, Prober, ProberError};
pub use tls::{ALPN_H3, TlsError, Trust};
