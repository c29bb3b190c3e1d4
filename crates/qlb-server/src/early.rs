//! Requests that arrive as TLS early data (0-RTT): the marker handlers see, the rule that
//! decides which of them are served before the handshake completes, and the policy for the
//! others (RFC 8470).

use std::fmt;
use std::sync::Arc;

use http::{Method, Uri};

/// Whether a request arrived as 0-RTT early data, before the handshake completed: in every
/// request's extensions, next to [`ConnectionInfo`](crate::ConnectionInfo).
///
/// Early data can be replayed by an attacker who captured it (RFC 8446 section 8): the
/// server serves early requests only if they are safe to replay (GET, HEAD, OPTIONS, or what
/// [`ServerBuilder::replay_safe`](crate::ServerBuilder::replay_safe) admits); a handler can
/// look here to be stricter still. Under [`EarlyDataPolicy::Hold`], other early requests
/// reach the handler only once the handshake has completed, still marked early.
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use qlb_server::EarlyData;
///
/// let app: Router = Router::new().route(
///     "/",
///     get(|Extension(early): Extension<EarlyData>| async move {
///         if early.is_early() { "early\n" } else { "after the handshake\n" }
///     }),
/// );
/// assert!(!EarlyData::default().is_early());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EarlyData(pub bool);

impl EarlyData {
    /// Whether the request came as early data.
    ///
    /// ```
    /// assert!(qlb_server::EarlyData(true).is_early());
    /// ```
    pub fn is_early(self) -> bool {
        self.0
    }
}

/// What the server does with a request that arrived as early data and is not safe to replay.
///
/// ```
/// use qlb_server::EarlyDataPolicy;
///
/// assert_eq!(EarlyDataPolicy::default(), EarlyDataPolicy::TooEarly);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum EarlyDataPolicy {
    /// Answer `425 Too Early` (RFC 8470): the client retries after its handshake.
    #[default]
    TooEarly,
    /// Hold the request until the handshake completes, then serve it: a replayed copy never
    /// completes a handshake, so it is never served.
    Hold,
}

/// A rule saying whether a request (method, URI) is safe to replay.
type Rule = dyn Fn(&Method, &Uri) -> bool + Send + Sync;

/// The application's own rule for early requests safe to replay, besides the safe methods.
#[derive(Clone)]
pub(crate) struct ReplaySafe(pub(crate) Arc<Rule>);

impl fmt::Debug for ReplaySafe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReplaySafe(..)")
    }
}

/// How a server treats early data.
#[derive(Clone, Debug, Default)]
pub(crate) struct EarlySettings {
    pub policy: EarlyDataPolicy,
    pub replay_safe: Option<ReplaySafe>,
}

/// What to do with a request now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Serve it now.
    Serve,
    /// Answer 425 Too Early.
    TooEarly,
    /// Serve it once the handshake has completed.
    Hold,
}

/// The methods RFC 9110 section 9.2.1 calls safe that a server may answer from early data.
pub(crate) fn is_safe_method(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl EarlySettings {
    /// The verdict on a request that arrived as early data (`early`) or not.
    pub(crate) fn verdict(&self, early: bool, method: &Method, uri: &Uri) -> Verdict {
        let safe = || {
            is_safe_method(method)
                || self
                    .replay_safe
                    .as_ref()
                    .is_some_and(|rule| (rule.0)(method, uri))
        };
        match (early, self.policy) {
            (false, _) => Verdict::Serve,
            _ if safe() => Verdict::Serve,
            (true, EarlyDataPolicy::TooEarly) => Verdict::TooEarly,
            (true, EarlyDataPolicy::Hold) => Verdict::Hold,
        }
    }
}

/// Turns `true` when the connection's handshake ends.
pub(crate) type HandshakeWaiter = tokio::sync::watch::Receiver<bool>;

/// What happened to a request that arrived as early data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EarlyOutcome {
    /// Handed to the service (safe to replay, or held until the handshake completed).
    Served,
    /// Answered 425 Too Early.
    TooEarly,
    /// Held until the handshake completed (then counted as served too).
    Held,
}

impl EarlyOutcome {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Served => "served",
            Self::TooEarly => "too_early",
            Self::Held => "held",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(path: &str) -> Uri {
        path.parse().expect("uri")
    }

    #[test]
    fn only_get_head_and_options_are_safe() {
        for method in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(is_safe_method(&method), "{method}");
        }
        for method in [
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::CONNECT,
            Method::TRACE,
        ] {
            assert!(!is_safe_method(&method), "{method}");
        }
    }

    #[test]
    fn requests_after_the_handshake_are_always_served() {
        let settings = EarlySettings::default();
        assert_eq!(
            settings.verdict(false, &Method::POST, &uri("/")),
            Verdict::Serve
        );
    }

    #[test]
    fn early_unsafe_requests_get_425_or_wait() {
        let mut settings = EarlySettings::default();
        assert_eq!(
            settings.verdict(true, &Method::GET, &uri("/")),
            Verdict::Serve
        );
        assert_eq!(
            settings.verdict(true, &Method::POST, &uri("/")),
            Verdict::TooEarly
        );
        settings.policy = EarlyDataPolicy::Hold;
        assert_eq!(
            settings.verdict(true, &Method::POST, &uri("/")),
            Verdict::Hold
        );
        assert_eq!(
            settings.verdict(true, &Method::HEAD, &uri("/")),
            Verdict::Serve
        );
    }

    #[test]
    fn the_application_can_mark_more_requests_safe() {
        let settings = EarlySettings {
            policy: EarlyDataPolicy::TooEarly,
            replay_safe: Some(ReplaySafe(Arc::new(|method, uri| {
                method == Method::POST && uri.path() == "/idempotent"
            }))),
        };
        assert_eq!(
            settings.verdict(true, &Method::POST, &uri("/idempotent")),
            Verdict::Serve
        );
        assert_eq!(
            settings.verdict(true, &Method::POST, &uri("/other")),
            Verdict::TooEarly
        );
        assert_eq!(
            format!("{:?}", settings.replay_safe),
            "Some(ReplaySafe(..))"
        );
    }
}
