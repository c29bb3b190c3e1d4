//! Errors of building a server: refused configuration, TLS material, socket. Messages say
//! what failed; the cause is the error's `source()`, as error chains expect.

use thiserror::Error;

/// The cause of an error, whatever its type: dependencies' error types stay out of the API,
/// so upgrading one changes no signature here.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a [`ServerBuilder`](crate::ServerBuilder) could not make a server.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The QUIC-LB configuration and server ID do not fit together.
    #[error(transparent)]
    QuicLb(#[from] quic_lb::ConfigError),
    /// The configuration's CIDs are too short for a server (see [`crate::QuicLbCidGenerator`]).
    #[error(
        "quic_lb config {config_id}: its CIDs are {cid_len} octets; a server needs at least 8 \
         (1 + server_id_len + nonce_len >= 8), so that config-failover CIDs issued after nonce \
         exhaustion keep the same length"
    )]
    CidTooShort {
        /// The config rotation codepoint.
        config_id: u8,
        /// `1 + server_id_len + nonce_len`.
        cid_len: usize,
    },
    /// A rotation must move to another codepoint.
    #[error(
        "quic_lb config {config_id}: the server already issues CIDs under this codepoint; rotate to another config_id"
    )]
    RotationSameCodepoint {
        /// The codepoint asked for.
        config_id: u8,
    },
    /// A rotation must keep the CID length: quinn reads short headers with one CID length
    /// per endpoint, so the running connections' CIDs would stop parsing.
    #[error(
        "quic_lb: rotating from {from}-octet to {to}-octet CIDs; the new config must keep \
         1 + server_id_len + nonce_len = {from}"
    )]
    RotationCidLength {
        /// The current CID length.
        from: usize,
        /// The new configuration's CID length.
        to: usize,
    },
    /// A preferred address no client could move to.
    #[error(
        "preferred_address {0}: must be a unicast address of this server (not unspecified, \
         not multicast)"
    )]
    PreferredAddress(std::net::SocketAddr),
    /// A lifecycle limit is longer than a server may wait (it would overflow a deadline).
    #[error("{setting}: {value:?} exceeds the maximum of {max:?}")]
    DurationTooLong {
        /// The builder method that set it.
        setting: &'static str,
        /// The value asked for.
        value: std::time::Duration,
        /// The largest value allowed.
        max: std::time::Duration,
    },
    /// The session ticket rotation period is outside 1 s ..= 7 days.
    #[error(
        "ticket_period: {0:?} is outside 1s ..= 7 days (RFC 8446 caps ticket lifetimes at 7 days)"
    )]
    TicketPeriod(std::time::Duration),
    /// The certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A UDP socket (the plain one, or the GUE one) could not be bound or set up.
    #[error("binding UDP {addr}")]
    Bind {
        /// The address asked for: `bind`'s, or `gue`'s.
        addr: std::net::SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
}

/// Why a TLS identity could not be loaded or used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("{path}: reading PEM")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong (the PEM reader's error).
        source: BoxError,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no certificate found")]
    NoCertificate(String),
    /// rustls refused the certificate or key; the source is rustls's reason.
    #[error("TLS configuration refused")]
    Rustls(#[source] BoxError),
    /// Generating a self-signed certificate failed; the source is the generator's reason.
    #[error("generating a self-signed certificate")]
    SelfSigned(#[source] BoxError),
    /// The TLS configuration has no cipher suite QUIC can use.
    #[error("TLS: no TLS 1.3 cipher suite usable by QUIC")]
    NoQuicCipherSuite,
}
