//! One request on one connection: the request head as HTTP/3 wants it, the request body
//! streamed from a task, the response head, and which failures leave the request unprocessed
//! (so that it may go to another connection).

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::pin;

use bytes::{Buf, Bytes};
use h3::error::{Code, StreamError};
use http::header::{self, HeaderMap, HeaderName};
use http::uri::{Scheme, Uri};
use http_body::Body;
use tokio::task::JoinHandle;

use crate::connections::lease::Lease;
use crate::connections::shared::{ConnShared, Early, SendRequest};
use crate::error::{BoxError, Error};
use crate::requests::body::{Deadline, Pump, RecvStream, ResponseBody};

type BidiStream = h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;
type SendStream = h3::client::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

/// A request extension: the application vouches that this request is safe to replay, so a
/// client with [`zero_rtt`](crate::ClientBuilder::zero_rtt) on sends it as early data even
/// though its method is not GET, HEAD or OPTIONS. A server that disagrees answers
/// `425 Too Early`, and the client sends it again after the handshake (once, and only if its
/// body is empty).
///
/// ```
/// let mut request = http::Request::post("/cart/42/view").body(String::new())?;
/// request.extensions_mut().insert(qlb_client::ReplaySafe);
/// # Ok::<(), http::Error>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplaySafe;

/// A response extension: which backend and connection served the request.
///
/// ```no_run
/// # async fn demo(client: qlb_client::Client) -> Result<(), Box<dyn std::error::Error>> {
/// let response = client.send(http::Request::get("/").body(String::new())?).await?;
/// let served = response.extensions().get::<qlb_client::ServedBy>().ok_or("always set")?;
/// println!("{} on connection {}", served.backend, served.connection);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServedBy {
    /// The backend's address.
    pub backend: SocketAddr,
    /// The connection's [`id`](crate::Connection::id).
    pub connection: u64,
}

/// Connection-specific header fields, which HTTP/3 forbids (RFC 9114 section 4.2).
const CONNECTION_SPECIFIC: [HeaderName; 4] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// A request's method, URI and header fields, kept so that it can be sent again.
#[derive(Debug)]
pub(crate) struct RequestHead {
    method: http::Method,
    uri: Uri,
    headers: HeaderMap,
    /// A safe method, or marked [`ReplaySafe`]: it may go as early data.
    replay_safe: bool,
}

impl RequestHead {
    /// The head of `parts`, with a relative URI made absolute on `server_name` (or the Host
    /// field), the Host field folded into the authority and connection-specific fields
    /// dropped. Refuses what h3 would answer by closing the whole connection.
    pub(crate) fn new(parts: http::request::Parts, server_name: &str) -> Result<Self, Error> {
        let http::request::Parts {
            method,
            uri,
            mut headers,
            extensions,
            ..
        } = parts;
        let replay_safe = is_replay_safe(&method) || extensions.get::<ReplaySafe>().is_some();
        let host = headers
            .remove(header::HOST)
            .map(|host| {
                host.to_str()
                    .map(str::to_owned)
                    .map_err(|_| Error::InvalidRequest("the Host field is not text".to_owned()))
            })
            .transpose()?;
        let uri = match uri.authority() {
            Some(authority) => {
                if uri.scheme() != Some(&Scheme::HTTPS) {
                    return Err(Error::InvalidRequest(format!(
                        "{uri}: HTTP/3 URIs are https://"
                    )));
                }
                if host
                    .as_deref()
                    .is_some_and(|host| host != authority.as_str())
                {
                    return Err(Error::InvalidRequest(format!(
                        "the Host field contradicts {uri}"
                    )));
                }
                uri
            }
            None => {
                let authority = host.unwrap_or_else(|| {
                    if server_name.contains(':') {
                        format!("[{server_name}]")
                    } else {
                        server_name.to_owned()
                    }
                });
                let path = uri.path_and_query().map_or("/", |path| path.as_str());
                Uri::builder()
                    .scheme(Scheme::HTTPS)
                    .authority(authority)
                    .path_and_query(path)
                    .build()
                    .map_err(|err| Error::InvalidRequest(err.to_string()))?
            }
        };
        for name in CONNECTION_SPECIFIC {
            headers.remove(name);
        }
        Ok(Self {
            method,
            uri,
            headers,
            replay_safe,
        })
    }

    fn to_h3(&self) -> http::Request<()> {
        let mut request = http::Request::new(());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// Why an exchange failed.
#[derive(Debug)]
#[must_use = "an unprocessed failure holds the request body for the retry"]
pub(crate) enum Failure<B> {
    /// No server processed the request and its body is untouched: it may be sent on
    /// another connection.
    Unprocessed {
        /// What happened.
        error: Error,
        /// The body, to send again.
        body: B,
    },
    /// For the caller.
    Failed(Error),
}

impl<B> Failure<B> {
    pub(crate) fn into_error(self) -> Error {
        match self {
            Self::Unprocessed { error, .. } | Self::Failed(error) => error,
        }
    }
}

/// Sends `head` and `body` on the lease's connection; returns the response once its head
/// arrives, its body reading on from the stream.
///
/// On a connection still resuming in 0-RTT, a request of a safe method or marked
/// [`ReplaySafe`] goes as early data (others wait for the handshake); if the server answers it `425 Too Early`, or refused the
/// early data, it is sent once more after the handshake (when its body is empty and so was
/// kept).
pub(crate) async fn send_on<B>(
    mut lease: Lease,
    head: &RequestHead,
    body: B,
    deadline: Option<Deadline>,
) -> Result<http::Response<ResponseBody>, Failure<B>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let conn = lease.connection().clone();
    if conn.early() == Early::Pending && !head.replay_safe {
        conn.handshake_done().await;
    }
    let early = conn.early() == Early::Pending;
    let mut outcome = exchange(conn.sender(), head, body, early).await;
    if outcome.early {
        outcome = again_after_handshake(&conn, head, outcome).await;
    }
    match outcome.result {
        Ok((response, stream, pump)) => {
            lease.responded(response.status(), response.headers());
            conn.identify(response.headers());
            let served = ServedBy {
                backend: conn.remote_addr(),
                connection: conn.id,
            };
            let mut response = response.map(|()| ResponseBody::new(stream, pump, lease, deadline));
            response.extensions_mut().insert(served);
            Ok(response)
        }
        Err(failure) => {
            let error = match &failure {
                Failure::Unprocessed { error, .. } | Failure::Failed(error) => error,
            };
            if matches!(error, Error::Rejected | Error::GoingAway) {
                conn.going_away();
                lease.turned_away();
            } else {
                lease.failed();
            }
            Err(failure)
        }
    }
}

/// The methods RFC 9110 section 9.2.1 calls safe, which a client sends as early data.
pub(crate) fn is_replay_safe(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS
    )
}

/// What the first exchange of an early request calls for once the handshake is over: the
/// same exchange again after a 425 or refused early data, else the outcome as it is.
async fn again_after_handshake<B>(
    conn: &ConnShared,
    head: &RequestHead,
    outcome: Exchanged<B>,
) -> Exchanged<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let Exchanged { result, kept, .. } = outcome;
    let too_early = match &result {
        Ok((response, ..)) => response.status() == http::StatusCode::TOO_EARLY,
        Err(_) => false,
    };
    let Some(body) = kept.filter(|_| too_early || result.is_err()) else {
        return Exchanged::done(result);
    };
    let fate = conn.handshake_done().await;
    if too_early || fate == Early::Rejected {
        tracing::debug!(
            connection = conn.id,
            too_early,
            "early request sent again after the handshake"
        );
        return exchange(conn.sender(), head, body, false).await;
    }
    // Not the early data's fault: the failure as a request sent after the handshake has it.
    Exchanged::done(match result {
        Err(Failure::Failed(Error::Rejected)) => Err(Failure::Unprocessed {
            error: Error::Rejected,
            body,
        }),
        other => other,
    })
}

/// The response head, its stream, and the task uploading the body.
type Exchange = (http::Response<()>, RecvStream, Option<Pump>);

/// An exchange's outcome, with what a retry after the handshake needs.
struct Exchanged<B> {
    result: Result<Exchange, Failure<B>>,
    /// The (empty) body of a request that went as early data, for sending it again.
    kept: Option<B>,
    /// Whether it went as early data (0-RTT, the handshake still running).
    early: bool,
}

impl<B> Exchanged<B> {
    fn done(result: Result<Exchange, Failure<B>>) -> Self {
        Self {
            result,
            kept: None,
            early: false,
        }
    }
}

/// Sends the request; `early`: as 0-RTT early data, in which case an empty body is kept
/// for a retry after the handshake (and a failure holds no body).
async fn exchange<B>(
    mut send: SendRequest,
    head: &RequestHead,
    body: B,
    early: bool,
) -> Exchanged<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let mut stream: BidiStream = match send.send_request(head.to_h3()).await {
        Ok(stream) => stream,
        // h3 refuses to open a request stream once GOAWAY came: nothing was sent.
        Err(StreamError::RemoteClosing) => {
            return Exchanged::done(Err(Failure::Unprocessed {
                error: Error::GoingAway,
                body,
            }));
        }
        Err(err) => return Exchanged::done(Err(Failure::Failed(Error::http3(err)))),
    };
    // An empty body is kept, so that a rejected request can be sent again; a body with
    // content streams from a task and cannot be replayed.
    let (kept, pump, mut recv) = if body.is_end_stream() {
        // A server may answer without waiting for the end of the request and stop the
        // request stream (RFC 9114 section 4.1): the response decides, not this.
        let _ = stream.finish().await;
        let (_, recv) = stream.split();
        (Some(body), None, recv)
    } else {
        let (send, recv) = stream.split();
        (None, Some(tokio::spawn(stream_body(send, body))), recv)
    };
    match recv.recv_response().await {
        Ok(response) => Exchanged {
            result: Ok((response, recv, pump)),
            kept: kept.filter(|_| early),
            early,
        },
        Err(err) if early && kept.is_some() => Exchanged {
            result: Err(Failure::Failed(match is_rejected(&err) {
                true => Error::Rejected,
                false => Error::http3(err),
            })),
            kept,
            early,
        },
        Err(err) => Exchanged {
            result: Err(failure(err, kept, pump).await),
            kept: None,
            early,
        },
    }
}

/// Whether the server refused the request unprocessed (RFC 9114 section 4.1.1).
pub(crate) fn is_rejected(err: &StreamError) -> bool {
    matches!(err, StreamError::RemoteTerminate { code } if *code == Code::H3_REQUEST_REJECTED)
}

/// What a failed exchange means: a rejected request with its body still at hand may go
/// elsewhere; a failed body upload explains the stream error it caused.
async fn failure<B>(err: StreamError, kept: Option<B>, pump: Option<Pump>) -> Failure<B> {
    if is_rejected(&err) {
        return match kept {
            Some(body) => Failure::Unprocessed {
                error: Error::Rejected,
                body,
            },
            None => Failure::Failed(Error::Rejected),
        };
    }
    if let Some(pump) = pump.filter(JoinHandle::is_finished) {
        if let Ok(Err(upload)) = pump.await {
            return Failure::Failed(upload);
        }
    }
    Failure::Failed(Error::http3(err))
}

/// Streams `body` (data, then trailers) onto the request stream and finishes it; on a body
/// error, cancels the stream.
async fn stream_body<B>(mut stream: SendStream, body: B) -> Result<(), Error>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let mut body = pin!(body);
    // The body's own error type need not be Send: box it before anything awaits.
    let next = |cx: &mut std::task::Context<'_>, body: std::pin::Pin<&mut B>| {
        body.poll_frame(cx)
            .map(|frame| frame.map(|frame| frame.map_err(Into::<BoxError>::into)))
    };
    while let Some(frame) = poll_fn(|cx| next(cx, body.as_mut())).await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) => {
                stream.stop_stream(Code::H3_REQUEST_CANCELLED);
                return Err(Error::RequestBody(err));
            }
        };
        match frame.into_data() {
            Ok(mut data) => {
                if data.has_remaining() {
                    stream
                        .send_data(data.copy_to_bytes(data.remaining()))
                        .await
                        .map_err(Error::http3)?;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    stream.send_trailers(trailers).await.map_err(Error::http3)?;
                    break;
                }
            }
        }
    }
    stream.finish().await.map_err(Error::http3)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(request: http::Request<()>, server_name: &str) -> Result<RequestHead, Error> {
        RequestHead::new(request.into_parts().0, server_name)
    }

    #[test]
    fn relative_uris_go_to_the_server_name() {
        let request = http::Request::get("/whoami?x=1").body(()).expect("request");
        let head = head(request, "backend.internal").expect("valid");
        assert_eq!(head.uri, "https://backend.internal/whoami?x=1");
        let v6 = head_of("/", "::1");
        assert_eq!(v6.uri, "https://[::1]/");
    }

    fn head_of(path: &str, server_name: &str) -> RequestHead {
        head(
            http::Request::get(path).body(()).expect("request"),
            server_name,
        )
        .expect("valid")
    }

    #[test]
    fn the_host_field_becomes_the_authority() {
        let request = http::Request::get("/")
            .header("host", "api.example:8443")
            .header("connection", "keep-alive")
            .header("x-kept", "1")
            .body(())
            .expect("request");
        let head = head(request, "ignored").expect("valid");
        assert_eq!(head.uri, "https://api.example:8443/");
        assert!(head.headers.get("host").is_none());
        assert!(head.headers.get("connection").is_none());
        assert_eq!(head.headers["x-kept"], "1");
    }

    #[test]
    fn requests_h3_would_close_the_connection_over_are_refused() {
        let contradicting = http::Request::get("https://a.example/")
            .header("host", "b.example")
            .body(())
            .expect("request");
        assert!(matches!(
            head(contradicting, "a.example"),
            Err(Error::InvalidRequest(_))
        ));
        let plain_http = http::Request::get("http://a.example/")
            .body(())
            .expect("request");
        assert!(matches!(
            head(plain_http, "a.example"),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn only_request_rejected_means_unprocessed() {
        assert!(is_rejected(&StreamError::RemoteTerminate {
            code: Code::H3_REQUEST_REJECTED
        }));
        for code in [
            Code::H3_REQUEST_CANCELLED,
            Code::H3_INTERNAL_ERROR,
            Code::H3_NO_ERROR,
        ] {
            assert!(!is_rejected(&StreamError::RemoteTerminate { code }));
        }
        assert!(!is_rejected(&StreamError::RemoteClosing));
    }

    #[tokio::test]
    async fn a_rejection_returns_a_kept_body_for_another_try() {
        let rejected = || StreamError::RemoteTerminate {
            code: Code::H3_REQUEST_REJECTED,
        };
        match failure(rejected(), Some("body"), None).await {
            Failure::Unprocessed {
                error: Error::Rejected,
                body: "body",
            } => {}
            other => panic!("{other:?}"),
        }
        // Streamed already: the caller gets the rejection.
        assert!(matches!(
            failure::<&str>(rejected(), None, None).await,
            Failure::Failed(Error::Rejected)
        ));
        // Anything else goes back to the caller, even with the body at hand.
        let reset = StreamError::RemoteTerminate {
            code: Code::H3_INTERNAL_ERROR,
        };
        assert!(matches!(
            failure(reset, Some("body"), None).await,
            Failure::Failed(Error::Http3(_))
        ));
    }
}
