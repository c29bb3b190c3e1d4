//! What the server adds to every response: its QUIC-LB server ID in the `qlb-server-id`
//! field (so that a client behind a load balancer knows which backend each of its
//! connections reached), and its load report ([`crate::load`]). Either can be off.

use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::load::{InFlight, LoadReporter};

/// The response header field that names the server (its QUIC-LB server ID, in hex), unless
/// [`ServerBuilder::server_id_header`](crate::ServerBuilder::server_id_header) turned it off.
///
/// ```
/// assert_eq!(qlb_server::SERVER_ID_HEADER.as_str(), "qlb-server-id");
/// ```
pub const SERVER_ID_HEADER: HeaderName = HeaderName::from_static("qlb-server-id");

/// The fields a server stamps on its responses.
#[derive(Debug, Default)]
pub(crate) struct Stamp {
    pub(crate) server_id: Option<HeaderValue>,
    pub(crate) load: Option<LoadReporter>,
}

impl Stamp {
    /// Counts a request in flight (for the load report) until the guard drops.
    pub(crate) fn started(&self) -> Option<InFlight<'_>> {
        self.load.as_ref().map(LoadReporter::started)
    }

    /// Adds the fields to a response of `status`.
    pub(crate) fn apply(&self, status: StatusCode, headers: &mut HeaderMap) {
        if let Some(server_id) = &self.server_id {
            headers.insert(SERVER_ID_HEADER, server_id.clone());
        }
        if let Some(load) = &self.load {
            load.report(status, headers);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_carry_what_is_on() {
        let both = Stamp {
            server_id: Some(HeaderValue::from_static("0a01")),
            load: Some(LoadReporter::default()),
        };
        let mut headers = HeaderMap::new();
        both.apply(StatusCode::OK, &mut headers);
        assert_eq!(headers[SERVER_ID_HEADER], "0a01");
        assert!(headers.contains_key(crate::LOAD_HEADER));
        let mut none = HeaderMap::new();
        Stamp::default().apply(StatusCode::OK, &mut none);
        assert!(none.is_empty());
    }
}
