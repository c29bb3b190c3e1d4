//! Which unprocessed failures a request is sent again after: the retry budget.
//!
//! A request no server processed may go out again (RFC 9114 section 5.2). One the server
//! turned away (H3_REQUEST_REJECTED, no connection to it) is retried once, so that an
//! overloaded or dying fleet does not see each request twice over. One that never left the
//! client, because h3 refused to open its stream after a GOAWAY it had read but the pool had
//! not yet seen, cost nobody anything: like gRPC's transparent retries, it does not use up
//! that retry. When the whole fleet sends GOAWAY at once (a key rotation retires every
//! connection), a request can meet two such connections in a row.

use crate::error::Error;

/// Attempts a request makes at most, whatever failed: bounds the loop however often the
/// connections it finds are going away.
pub(crate) const MAX_ATTEMPTS: u32 = 4;

/// What one request has used of its retries.
#[derive(Debug, Default)]
pub(crate) struct RetryBudget {
    attempts: u32,
    retried: bool,
}

impl RetryBudget {
    /// Whether, after an attempt that failed unprocessed with `error`, the request goes out
    /// again.
    pub(crate) fn again_after(&mut self, error: &Error) -> bool {
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            return false;
        }
        if never_sent(error) {
            return true;
        }
        !std::mem::replace(&mut self.retried, true)
    }
}

/// Whether the attempt ended before the request left the client.
fn never_sent(error: &Error) -> bool {
    matches!(error, Error::GoingAway)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turned_away_request_is_retried_once() {
        let mut budget = RetryBudget::default();
        assert!(budget.again_after(&Error::Rejected));
        assert!(!budget.again_after(&Error::Rejected));
    }

    #[test]
    fn a_request_that_never_left_keeps_its_retry() {
        let mut budget = RetryBudget::default();
        assert!(budget.again_after(&Error::GoingAway));
        assert!(budget.again_after(&Error::GoingAway));
        assert!(budget.again_after(&Error::Rejected));
        assert!(
            !budget.again_after(&Error::GoingAway),
            "the attempts are bounded"
        );
    }

    #[test]
    fn attempts_are_bounded_however_they_fail() {
        let mut budget = RetryBudget::default();
        let made = (0..10)
            .take_while(|_| budget.again_after(&Error::GoingAway))
            .count();
        assert_eq!(made as u32 + 1, MAX_ATTEMPTS);
    }
}
