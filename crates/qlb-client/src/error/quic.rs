//! QUIC errors in qlb-client's own terms: what happened ([`QuicErrorKind`],
//! [`ConnectStartErrorKind`]), with quinn's error kept as the source, so that a quinn upgrade
//! does not change the API.

use std::fmt;

use thiserror::Error;

/// What ended a QUIC connection, or kept it from being established.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum QuicErrorKind {
    /// The peer implements no QUIC version this side does.
    VersionMismatch,
    /// This side found a transport error, with its code: the peer broke QUIC, or the
    /// handshake failed (TLS alerts are codes `0x100 + alert`: a refused certificate, say).
    Transport {
        /// The QUIC transport error code.
        code: u64,
    },
    /// The peer's QUIC stack closed the connection with a transport error code (it refused
    /// the handshake, say).
    ClosedByPeer {
        /// The QUIC transport error code.
        code: u64,
    },
    /// The peer's application closed the connection with an application (HTTP/3) code.
    ApplicationClosed {
        /// The application error code.
        code: u64,
    },
    /// The peer reset the connection (a stateless reset: it restarted, say).
    Reset,
    /// Nothing came from the peer for the idle timeout.
    TimedOut,
    /// This side closed the connection.
    LocallyClosed,
    /// No connection ID was left to use.
    CidsExhausted,
}

impl QuicErrorKind {
    pub(super) fn of(err: &quinn::ConnectionError) -> Self {
        use quinn::ConnectionError as Quinn;
        match err {
            Quinn::VersionMismatch => Self::VersionMismatch,
            Quinn::TransportError(err) => Self::Transport {
                code: err.code.into(),
            },
            Quinn::ConnectionClosed(close) => Self::ClosedByPeer {
                code: close.error_code.into(),
            },
            Quinn::ApplicationClosed(close) => Self::ApplicationClosed {
                code: close.error_code.into_inner(),
            },
            Quinn::Reset => Self::Reset,
            Quinn::TimedOut => Self::TimedOut,
            Quinn::LocallyClosed => Self::LocallyClosed,
            Quinn::CidsExhausted => Self::CidsExhausted,
        }
    }
}

/// Words for an error made from a kind alone (quinn's, where quinn has them).
impl fmt::Display for QuicErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::VersionMismatch => f.write_str("peer doesn't implement any supported version"),
            Self::Transport { code } => write!(f, "transport error {code:#x}"),
            Self::ClosedByPeer { code } => write!(f, "aborted by peer: {code:#x}"),
            Self::ApplicationClosed { code } => write!(f, "closed by peer: {code}"),
            Self::Reset => f.write_str("reset by peer"),
            Self::TimedOut => f.write_str("timed out"),
            Self::LocallyClosed => f.write_str("closed"),
            Self::CidsExhausted => f.write_str("CIDs exhausted"),
        }
    }
}

/// A QUIC connection failed: its [`kind`](QuicError::kind), and quinn's error as the source.
///
/// ```
/// use qlb_client::{QuicError, QuicErrorKind};
///
/// let err = QuicError::from(QuicErrorKind::Reset);
/// assert_eq!(err.kind(), QuicErrorKind::Reset);
/// assert_eq!(err.to_string(), "reset by peer");
/// ```
#[derive(Debug, Error)]
#[error("{}", self.cause())]
pub struct QuicError {
    kind: QuicErrorKind,
    /// None for an error made from a kind alone.
    #[source]
    source: Option<quinn::ConnectionError>,
}

impl QuicError {
    pub(crate) fn new(err: quinn::ConnectionError) -> Self {
        Self {
            kind: QuicErrorKind::of(&err),
            source: Some(err),
        }
    }

    /// What happened.
    ///
    /// ```
    /// # let err = qlb_client::QuicError::from(qlb_client::QuicErrorKind::TimedOut);
    /// let silent = matches!(err.kind(), qlb_client::QuicErrorKind::TimedOut);
    /// ```
    pub fn kind(&self) -> QuicErrorKind {
        self.kind
    }

    /// quinn's words when there is a quinn error: they say more (a TLS alert's reason, say).
    fn cause(&self) -> &dyn fmt::Display {
        match &self.source {
            Some(source) => source,
            None => &self.kind,
        }
    }
}

/// An error of `kind` with no underlying cause: for code (and tests) that judges errors by
/// their kind.
impl From<QuicErrorKind> for QuicError {
    fn from(kind: QuicErrorKind) -> Self {
        Self { kind, source: None }
    }
}

/// Why a connection attempt was refused before anything was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectStartErrorKind {
    /// The local endpoint is shutting down.
    EndpointStopping,
    /// No connection ID was left to use.
    CidsExhausted,
    /// The server name is not a valid DNS name or IP address.
    InvalidServerName,
    /// The server address cannot be connected to (port 0, another address family...).
    InvalidRemoteAddress,
    /// No client configuration was given.
    NoClientConfig,
    /// The configured QUIC version is not supported.
    UnsupportedVersion,
}

/// A connection attempt was refused before anything was sent (a bad server name, say): its
/// [`kind`](ConnectStartError::kind), and quinn's error as the source.
///
/// ```
/// use qlb_client::{ConnectError, Connection, ConnectStartErrorKind, Trust};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let err = Connection::connect("127.0.0.1:9".parse()?, "not a name", &Trust::Insecure).await;
/// let Err(ConnectError::Start(start)) = err else {
///     return Err("refused before anything was sent".into());
/// };
/// assert_eq!(start.kind(), ConnectStartErrorKind::InvalidServerName);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Error)]
#[error("{source}")]
pub struct ConnectStartError {
    kind: ConnectStartErrorKind,
    source: quinn::ConnectError,
}

impl ConnectStartError {
    pub(crate) fn new(source: quinn::ConnectError) -> Self {
        use quinn::ConnectError as Quinn;
        let kind = match &source {
            Quinn::EndpointStopping => ConnectStartErrorKind::EndpointStopping,
            Quinn::CidsExhausted => ConnectStartErrorKind::CidsExhausted,
            Quinn::InvalidServerName(_) => ConnectStartErrorKind::InvalidServerName,
            Quinn::InvalidRemoteAddress(_) => ConnectStartErrorKind::InvalidRemoteAddress,
            Quinn::NoDefaultClientConfig => ConnectStartErrorKind::NoClientConfig,
            Quinn::UnsupportedVersion => ConnectStartErrorKind::UnsupportedVersion,
        };
        Self { kind, source }
    }

    /// What was wrong.
    ///
    /// ```no_run
    /// # fn demo(err: qlb_client::ConnectStartError) {
    /// println!("{:?}", err.kind());
    /// # }
    /// ```
    pub fn kind(&self) -> ConnectStartErrorKind {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_quinn_and_words_stay_quinn_s() {
        let err = QuicError::new(quinn::ConnectionError::Reset);
        assert_eq!(err.kind(), QuicErrorKind::Reset);
        assert_eq!(err.to_string(), "reset by peer");
        assert!(std::error::Error::source(&err).is_some());
        // Made from the kind alone: the same words, no source.
        let bare = QuicError::from(QuicErrorKind::TimedOut);
        assert_eq!(
            bare.to_string(),
            quinn::ConnectionError::TimedOut.to_string()
        );
        assert!(std::error::Error::source(&bare).is_none());
        let closed = QuicError::new(quinn::ConnectionError::ApplicationClosed(
            quinn::ApplicationClose {
                error_code: quinn::VarInt::from_u32(0x10b),
                reason: bytes::Bytes::new(),
            },
        ));
        assert_eq!(
            closed.kind(),
            QuicErrorKind::ApplicationClosed { code: 0x10b }
        );
        let start = ConnectStartError::new(quinn::ConnectError::InvalidServerName("x y".into()));
        assert_eq!(start.kind(), ConnectStartErrorKind::InvalidServerName);
        assert_eq!(start.to_string(), "invalid server name: x y");
    }
}
