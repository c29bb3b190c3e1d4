//! Errors: a configuration or input that is refused, and why a CID cannot be routed.

use thiserror::Error;

/// A refused configuration or encoder input. Each message starts with the name of the field
/// at fault, as it is spelled in configuration files and on the `qlb cid` command line.
///
/// ```
/// use quic_lb::{Config, ConfigError, ConfigId};
///
/// let err = Config::new(ConfigId::new(0)?, 2, 2, None).unwrap_err();
/// assert_eq!(err, ConfigError::NonceLen(2));
/// assert_eq!(err.to_string(), "nonce_len: must be 4..=18 octets, got 2");
/// # Ok::<(), ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `config_id` outside 0..=6 (7 is the config-failover codepoint).
    #[error("config_id: must be 0..=6 (7 is the reserved config-failover codepoint), got {0}")]
    ConfigId(u8),
    /// `server_id_len` outside 1..=15.
    #[error("server_id_len: must be 1..=15 octets, got {0}")]
    ServerIdLen(usize),
    /// `nonce_len` outside 4..=18.
    #[error("nonce_len: must be 4..=18 octets, got {0}")]
    NonceLen(usize),
    /// `server_id_len + nonce_len` above 19.
    #[error(
        "nonce_len: server_id_len + nonce_len must be at most 19, got {server_id_len} + {nonce_len}"
    )]
    PlaintextLen {
        /// The configured server ID length.
        server_id_len: usize,
        /// The configured nonce length.
        nonce_len: usize,
    },
    /// `key` is not 16 octets of hex.
    #[error("key: must be 32 hex digits (a 16-octet AES-128 key)")]
    Key,
    /// `server_id` is not hex.
    #[error("server_id: must be hex")]
    ServerIdHex,
    /// `server_id` length differs from the configuration's `server_id_len`.
    #[error("server_id: the config takes {expected} octets, got {got}")]
    ServerIdMismatch {
        /// `server_id_len` of the configuration.
        expected: usize,
        /// Octets given.
        got: usize,
    },
    /// `nonce` length differs from the configuration's `nonce_len`.
    #[error("nonce: the config takes {expected} octets, got {got}")]
    NonceMismatch {
        /// `nonce_len` of the configuration.
        expected: usize,
        /// Octets given.
        got: usize,
    },
    /// Appended server octets would make the CID longer than 20 octets.
    #[error(
        "appended_octets: 1 + {plaintext_len} + {appended} octets exceeds the 20-octet QUIC CID limit"
    )]
    AppendedOctets {
        /// `server_id_len + nonce_len`.
        plaintext_len: usize,
        /// Appended octets asked for.
        appended: usize,
    },
}

/// Why a destination connection ID does not route to a server (draft section 4.1).
///
/// An unroutable packet is not necessarily bad: Initial and 0-RTT packets carry client-chosen
/// DCIDs and go to the load balancer's fallback.
///
/// ```
/// use quic_lb::{Decoder, Unroutable};
///
/// let decoder = Decoder::new();
/// assert_eq!(decoder.decode(&[0x00, 1, 2]), Err(Unroutable::UnknownConfig(0)));
/// assert_eq!(Unroutable::FailoverCodepoint.to_string(), "config-failover codepoint 7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum Unroutable {
    /// The DCID is empty.
    #[error("empty connection ID")]
    Empty,
    /// The first octet carries the 0b111 config-failover codepoint.
    #[error("config-failover codepoint 7")]
    FailoverCodepoint,
    /// No configuration is installed for this codepoint.
    #[error("no config for codepoint {0}")]
    UnknownConfig(u8),
    /// Fewer octets than the configuration's CID length.
    #[error("too short for its config: {got} octets, need {needed}")]
    TooShort {
        /// `1 + server_id_len + nonce_len` of the configuration.
        needed: usize,
        /// Octets available.
        got: usize,
    },
}

/// A connection ID that cannot be parsed.
///
/// ```
/// use quic_lb::{ConnectionId, ConnectionIdError};
///
/// assert_eq!("abc".parse::<ConnectionId>(), Err(ConnectionIdError::Hex));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConnectionIdError {
    /// Not an even number of hex digits.
    #[error("cid: must be hex")]
    Hex,
    /// Longer than QUIC's 20-octet limit.
    #[error("cid: at most 20 octets, got {0}")]
    TooLong(usize),
}
