//! QUIC-LB: routable QUIC connection IDs, as specified by
//! [draft-ietf-quic-load-balancers-21](https://datatracker.ietf.org/doc/draft-ietf-quic-load-balancers/).
//!
//! A server writes its *server ID* into every connection ID it issues; a load balancer that
//! shares the [`Config`] reads it back from the destination connection ID of any packet and
//! routes the packet to that server, whatever the client's address has become. Three modes
//! protect the server ID: plaintext (no key), single-pass AES-128 and a four-pass Feistel
//! network over AES-128, chosen by the configuration's lengths and key.
//!
//! * [`Encoder`] (server side) issues unique, unlinkable CIDs for one server ID and reports
//!   nonce exhaustion, after which it issues config-failover CIDs (codepoint 0b111).
//! * [`Decoder`] (load balancer side) holds up to seven configurations, one per config
//!   rotation codepoint, and extracts the server ID without allocating.
//!
//! ```
//! use quic_lb::{Config, ConfigId, Decoder, Encoder, Key};
//!
//! let config = Config::new(ConfigId::new(0)?, 2, 6, Some(Key::random()))?;
//! let mut encoder = Encoder::new(config.clone(), "0102".parse()?)?;
//! let cid = encoder.generate();
//!
//! let mut decoder = Decoder::new();
//! decoder.insert(config);
//! assert_eq!(decoder.decode(&cid)?.server_id.to_string(), "0102");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! This crate does no I/O. It follows the draft with the errata listed in the project's
//! `docs/quic-lb.md`.

mod cid;
mod cipher;
mod config;
mod decoder;
mod encoder;
mod error;
mod nonce;
mod octets;
mod server_id;

pub use cid::ConnectionId;
pub use config::{Config, ConfigId, Key, Mode};
pub use decoder::{Decoded, Decoder};
pub use encoder::Encoder;
pub use error::{ConfigError, ConnectionIdError, Unroutable};
pub use server_id::ServerId;
