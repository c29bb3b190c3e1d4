//! HTTP/3 errors in qlb-client's own terms: what happened ([`Http3ErrorKind`]), with h3's
//! error kept as the source, so that an h3 0.0.x upgrade does not change the API.

use h3::error::{ConnectionError, LocalError, StreamError};
use h3::quic::ConnectionErrorIncoming;
use thiserror::Error;

use crate::error::quic::QuicErrorKind;

/// What went wrong with an HTTP/3 connection or request stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Http3ErrorKind {
    /// The peer reset or stopped the request stream with this HTTP/3 code
    /// (`H3_REQUEST_REJECTED`, 0x10b: the request was not processed).
    StreamReset {
        /// The HTTP/3 error code.
        code: u64,
    },
    /// This side found the stream broken (a protocol error, say) and ended it with this code.
    StreamFailed {
        /// The HTTP/3 error code.
        code: u64,
    },
    /// The peer is going away (it sent GOAWAY): no new request streams.
    GoingAway,
    /// A header section was larger than the peer accepts.
    HeaderTooBig,
    /// The peer closed the connection with this HTTP/3 code.
    ConnectionClosed {
        /// The HTTP/3 error code.
        code: u64,
    },
    /// This side closed the connection: with this HTTP/3 code (a protocol error of the peer,
    /// say), or none when it was closing anyway.
    LocallyClosed {
        /// The HTTP/3 error code, if one was sent.
        code: Option<u64>,
    },
    /// The QUIC connection underneath failed.
    Quic(QuicErrorKind),
    /// The connection timed out.
    TimedOut,
    /// Something h3 does not classify.
    Other,
}

impl Http3ErrorKind {
    fn of_stream(err: &StreamError) -> Self {
        match err {
            StreamError::RemoteTerminate { code } => Self::StreamReset { code: code.value() },
            StreamError::StreamError { code, .. } => Self::StreamFailed { code: code.value() },
            StreamError::RemoteClosing => Self::GoingAway,
            StreamError::HeaderTooBig { .. } => Self::HeaderTooBig,
            StreamError::ConnectionError(err) => Self::of_connection(err),
            _ => Self::Other,
        }
    }

    fn of_connection(err: &ConnectionError) -> Self {
        match err {
            ConnectionError::Local {
                error: LocalError::Application { code, .. },
            } => Self::LocallyClosed {
                code: Some(code.value()),
            },
            ConnectionError::Local { .. } => Self::LocallyClosed { code: None },
            ConnectionError::Remote(ConnectionErrorIncoming::ApplicationClose { error_code }) => {
                Self::ConnectionClosed { code: *error_code }
            }
            ConnectionError::Remote(ConnectionErrorIncoming::Timeout)
            | ConnectionError::Timeout => Self::TimedOut,
            // h3-quinn passes quinn's other connection errors through as they are.
            ConnectionError::Remote(ConnectionErrorIncoming::Undefined(err)) => err
                .downcast_ref::<quinn::ConnectionError>()
                .map_or(Self::Other, |err| Self::Quic(QuicErrorKind::of(err))),
            _ => Self::Other,
        }
    }
}

/// An HTTP/3 exchange or connection failed: its [`kind`](Http3Error::kind), and h3's error
/// as the source.
///
/// ```no_run
/// use qlb_client::{Error, Http3ErrorKind};
///
/// # fn demo(err: Error) {
/// if let Error::Http3(err) = &err {
///     if let Http3ErrorKind::StreamReset { code } = err.kind() {
///         println!("the server reset the request with {code:#x}");
///     }
/// }
/// # }
/// ```
#[derive(Debug, Error)]
#[error("{source}")]
pub struct Http3Error {
    kind: Http3ErrorKind,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl Http3Error {
    pub(crate) fn stream(err: StreamError) -> Self {
        Self {
            kind: Http3ErrorKind::of_stream(&err),
            source: Box::new(err),
        }
    }

    pub(crate) fn connection(err: ConnectionError) -> Self {
        Self {
            kind: Http3ErrorKind::of_connection(&err),
            source: Box::new(err),
        }
    }

    /// What happened.
    ///
    /// ```no_run
    /// # fn demo(err: qlb_client::Http3Error) {
    /// let reset = matches!(err.kind(), qlb_client::Http3ErrorKind::StreamReset { .. });
    /// # }
    /// ```
    pub fn kind(&self) -> Http3ErrorKind {
        self.kind
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use h3::error::Code;

    use super::*;

    #[test]
    fn kinds_follow_h3_and_words_stay_h3_s() {
        let reset = StreamError::RemoteTerminate {
            code: Code::H3_REQUEST_REJECTED,
        };
        let words = reset.to_string();
        let err = Http3Error::stream(reset);
        assert_eq!(err.kind(), Http3ErrorKind::StreamReset { code: 0x10b });
        assert_eq!(err.to_string(), words);
        assert!(std::error::Error::source(&err).is_some());
        assert_eq!(
            Http3Error::stream(StreamError::RemoteClosing).kind(),
            Http3ErrorKind::GoingAway
        );
        let closed = ConnectionError::Remote(ConnectionErrorIncoming::ApplicationClose {
            error_code: 0x100,
        });
        assert_eq!(
            Http3Error::stream(StreamError::ConnectionError(closed)).kind(),
            Http3ErrorKind::ConnectionClosed { code: 0x100 }
        );
        let lost = ConnectionError::Remote(ConnectionErrorIncoming::Undefined(Arc::new(
            quinn::ConnectionError::Reset,
        )));
        assert_eq!(
            Http3Error::connection(lost).kind(),
            Http3ErrorKind::Quic(QuicErrorKind::Reset)
        );
        assert_eq!(
            Http3Error::connection(ConnectionError::Timeout).kind(),
            Http3ErrorKind::TimedOut
        );
    }
}
