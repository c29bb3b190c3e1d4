//! Stateless QUIC Retry for a load balancer, sans-IO: bytes, addresses and an explicit time in,
//! values out.
//!
//! * [`Initial::parse`] reads a client Initial's long header up to its token (RFC 9000
//!   section 17.2.2, RFC 9369).
//! * [`retry_packet`] builds a Retry packet (RFC 9000 section 17.2.5) with its integrity tag
//!   (RFC 9001 section 5.8, RFC 9369 section 3.3.3).
//! * [`TokenKeys`] mints and validates Retry tokens in the format quinn 0.11 servers validate
//!   under the cluster's token key, so a backend accepts what the load balancer minted and
//!   sets `original_destination_connection_id` and `retry_source_connection_id` itself
//!   (`docs/retry.md`).
//! * [`derive_cluster_key`] is the one derivation of per-purpose keys from the cluster secret,
//!   shared by load balancers and servers.

mod initial;
mod keys;
mod packet;
mod reseal;
mod token;
mod varint;
mod version;

pub use initial::{Initial, InitialError};
pub use keys::{TOKEN_LABEL, derive_cluster_key};
pub use packet::{RetryError, retry_packet};
pub use reseal::{ResealError, replace_token};
pub use token::{NONCE_LEN, TokenError, TokenKey, TokenKeys, ValidToken};
pub use version::Version;
