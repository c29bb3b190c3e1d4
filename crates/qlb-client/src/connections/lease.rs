//! A request's hold on its connection (and backend): counted in flight from the moment it is
//! given a connection until its response body ends or is dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::connections::shared::ConnShared;

/// Who keeps the books on a pooled request besides its connection (its backend: counters and
/// latency estimate). A trait, so that the pool hands out leases without knowing backends.
pub(crate) trait RequestObserver: Send + Sync {
    /// The request was given a connection.
    fn started(&self);
    /// Its response head (`status`, `headers`) arrived after `latency`.
    fn responded(&self, latency: Duration, status: http::StatusCode, headers: &http::HeaderMap);
    /// It failed (counted once per request); `unanswered`: before any response, for a reason
    /// that speaks against the backend (not a GOAWAY refusal), which outlier detection counts.
    fn failed(&self, unanswered: bool);
    /// It is no longer in flight.
    fn ended(&self);
}

/// How the request fared so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// No response yet: ending like this (timeout, caller gave up) counts as an error.
    Pending,
    /// The response headers came.
    Responded,
    /// An error was counted already.
    Failed,
}

/// One request in flight on one connection; the counts go back down when it is dropped.
pub(crate) struct Lease {
    conn: Arc<ConnShared>,
    /// None for an unpooled [`Connection`](crate::Connection).
    observer: Option<Arc<dyn RequestObserver>>,
    started: Instant,
    outcome: Outcome,
}

impl Lease {
    /// A lease on `conn`, which the caller has already counted in (`try_acquire`).
    pub(crate) fn new(conn: Arc<ConnShared>, observer: Option<Arc<dyn RequestObserver>>) -> Self {
        if let Some(observer) = &observer {
            observer.started();
        }
        Self {
            conn,
            observer,
            started: Instant::now(),
            outcome: Outcome::Pending,
        }
    }

    pub(crate) fn connection(&self) -> &Arc<ConnShared> {
        &self.conn
    }

    /// The response head arrived: feeds the backend's latency estimate, load-report weight
    /// and outlier detection.
    pub(crate) fn responded(&mut self, status: http::StatusCode, headers: &http::HeaderMap) {
        if let Some(observer) = &self.observer {
            observer.responded(self.started.elapsed(), status, headers);
        }
        self.outcome = Outcome::Responded;
    }

    /// The request failed: counted once as an error of the backend.
    pub(crate) fn failed(&mut self) {
        self.fail(true);
    }

    /// The server refused the request because it is going away (GOAWAY, H3_REQUEST_REJECTED):
    /// an error, but not one that makes the backend an outlier.
    pub(crate) fn turned_away(&mut self) {
        self.fail(false);
    }

    fn fail(&mut self, blame: bool) {
        if self.outcome != Outcome::Failed {
            if let Some(observer) = &self.observer {
                observer.failed(blame && self.outcome == Outcome::Pending);
            }
        }
        self.outcome = Outcome::Failed;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.outcome == Outcome::Pending {
            self.failed();
        }
        self.conn.release();
        if let Some(observer) = &self.observer {
            observer.ended();
        }
    }
}
