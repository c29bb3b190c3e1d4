//! RFC 9114 section 5.2 GOAWAY identifiers of a server, and which request streams they admit.
//!
//! A server's GOAWAY carries the first client-initiated bidirectional stream ID it will *not*
//! process; requests on that stream and above are rejected with H3_REQUEST_REJECTED, and the
//! client may retry them elsewhere. A graceful shutdown sends two: first 2^62-4 (admits every
//! request, and tells the client to stop opening new ones), then, a round trip later, one past
//! the last request actually accepted. h3 0.0.8 treats the identifier as inclusive and computes
//! it from a count, so the connection task sends these values itself and rejects by them.

/// The largest client-initiated bidirectional stream ID: the first GOAWAY's identifier.
pub(crate) const MAX_CLIENT_BIDI_STREAM_ID: u64 = (1 << 62) - 4;
/// Client-initiated bidirectional stream IDs are 0, 4, 8, ...
const CLIENT_BIDI_STREAM_ID_STEP: u64 = 4;

/// Admission of request streams against the GOAWAY identifiers sent so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GoawayState {
    /// The highest request stream ID accepted.
    last_accepted: Option<u64>,
    /// The lowest GOAWAY identifier sent: streams at or above it are rejected.
    limit: Option<u64>,
}

impl GoawayState {
    /// Whether a request on `stream_id` may be processed; records it if so. QUIC opens
    /// streams in order, so the highest accepted ID bounds every accepted one.
    pub(crate) fn admit(&mut self, stream_id: u64) -> bool {
        if self.limit.is_some_and(|limit| stream_id >= limit) {
            return false;
        }
        self.last_accepted = Some(self.last_accepted.map_or(stream_id, |id| id.max(stream_id)));
        true
    }

    /// The identifier of the first GOAWAY: every request is still admitted.
    pub(crate) fn initial(&mut self) -> u64 {
        self.lower_limit(MAX_CLIENT_BIDI_STREAM_ID)
    }

    /// The identifier of the final GOAWAY: one past the last accepted request (0 if none).
    pub(crate) fn final_id(&mut self) -> u64 {
        let id = self.last_accepted.map_or(0, |last| {
            last.saturating_add(CLIENT_BIDI_STREAM_ID_STEP)
                .min(MAX_CLIENT_BIDI_STREAM_ID)
        });
        self.lower_limit(id)
    }

    /// GOAWAY identifiers never increase (RFC 9114 section 5.2).
    fn lower_limit(&mut self, id: u64) -> u64 {
        let limit = self.limit.map_or(id, |limit| limit.min(id));
        self.limit = Some(limit);
        limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_any_goaway_everything_is_admitted() {
        let mut state = GoawayState::default();
        assert!(state.admit(0));
        assert!(state.admit(400));
        assert!(state.admit(MAX_CLIENT_BIDI_STREAM_ID));
    }

    #[test]
    fn two_phase_goaway_admits_up_to_the_last_accepted_request() {
        let mut state = GoawayState::default();
        assert!(state.admit(0));
        assert!(state.admit(4));
        assert_eq!(state.initial(), MAX_CLIENT_BIDI_STREAM_ID);
        // Requests the client sent before it saw the first GOAWAY are still processed.
        assert!(state.admit(8));
        assert_eq!(state.final_id(), 12);
        assert!(!state.admit(12));
        assert!(!state.admit(16));
        // A rejected stream does not move the boundary.
        assert_eq!(state.final_id(), 12);
    }

    #[test]
    fn a_connection_without_requests_gets_zero() {
        let mut state = GoawayState::default();
        assert_eq!(state.initial(), MAX_CLIENT_BIDI_STREAM_ID);
        assert_eq!(state.final_id(), 0);
        assert!(!state.admit(0));
    }

    #[test]
    fn identifiers_never_increase() {
        let mut state = GoawayState::default();
        state.admit(8);
        assert_eq!(state.final_id(), 12);
        assert_eq!(state.initial(), 12);
        state.admit(MAX_CLIENT_BIDI_STREAM_ID - 4);
        assert_eq!(state.final_id(), 12);
    }

    #[test]
    fn the_last_possible_stream_caps_at_the_maximum() {
        let mut state = GoawayState::default();
        assert!(state.admit(MAX_CLIENT_BIDI_STREAM_ID));
        assert_eq!(state.final_id(), MAX_CLIENT_BIDI_STREAM_ID);
    }
}
