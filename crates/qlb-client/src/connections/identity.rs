//! Which backend a connection reached, behind a load balancer that hides them behind one
//! address: the server names itself in the `qlb-server-id` response field (qlb-server does,
//! with its QUIC-LB server ID), read from any response or asked with a `HEAD /` probe.

use bytes::Bytes;
use http::HeaderMap;

/// The response header field in which a server names itself.
pub(crate) const SERVER_ID_HEADER: &str = "qlb-server-id";

/// The server ID `headers` carry, if any.
pub(crate) fn server_id(headers: &HeaderMap) -> Option<Box<str>> {
    let value = headers.get(SERVER_ID_HEADER)?.to_str().ok()?.trim();
    (!value.is_empty()).then(|| value.into())
}

/// Asks the server on `send` who it is with `HEAD https://{authority}/` (any status will
/// do: the field comes with every response). None if it does not say, or the exchange fails.
pub(crate) async fn probe(
    mut send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    authority: &str,
) -> Option<Box<str>> {
    let uri = http::Uri::builder()
        .scheme("https")
        .authority(authority)
        .path_and_query("/")
        .build()
        .ok()?;
    let request = http::Request::head(uri).body(()).ok()?;
    let mut stream = send.send_request(request).await.ok()?;
    stream.finish().await.ok()?;
    let response = stream.recv_response().await.ok()?;
    server_id(response.headers())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_id_is_read_from_its_field() {
        let mut headers = HeaderMap::new();
        assert_eq!(server_id(&headers), None);
        headers.insert(SERVER_ID_HEADER, http::HeaderValue::from_static(" 0a01 "));
        assert_eq!(server_id(&headers).as_deref(), Some("0a01"));
        headers.insert(SERVER_ID_HEADER, http::HeaderValue::from_static(""));
        assert_eq!(server_id(&headers), None);
    }
}
