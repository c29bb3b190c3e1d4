//! One request: read its head, call the service with a streaming body, stream the response
//! (head, DATA, trailers) back on the request stream.

use std::pin::pin;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use h3::error::Code;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::body::RequestBody;
use crate::early::{EarlyOutcome, EarlySettings, HandshakeWaiter, Verdict};
use crate::stamp::Stamp;
use crate::{BoxError, ConnectionInfo, EarlyData, HttpService, Metrics, ResponseBody};

/// The server's side of an accepted request stream, before its head is read.
pub(crate) type Resolver = h3::server::RequestResolver<h3_quinn::Connection, Bytes>;
/// The sending half of an h3 request stream.
type SendStream = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;

/// How a request arrived: as early data (with a way to wait for the handshake) or not.
pub(crate) struct Arrival<'a> {
    /// Set if the request stream arrived before the handshake completed.
    pub early: Option<HandshakeWaiter>,
    pub settings: &'a EarlySettings,
    pub metrics: &'a Metrics,
}

/// Serves one request to completion; errors end the request, never the connection.
/// Returns the response status, if the request got as far as one. `stamp` counts the
/// request (load report) and adds its fields to the response.
pub(crate) async fn serve_request<S, B>(
    resolver: Resolver,
    service: S,
    info: ConnectionInfo,
    arrival: Arrival<'_>,
    stamp: Arc<Stamp>,
) -> Option<StatusCode>
where
    S: HttpService<B>,
    B: ResponseBody,
{
    let (head, stream) = match resolver.resolve_request().await {
        Ok(resolved) => resolved,
        Err(err) => {
            tracing::debug!(%err, "request head refused");
            return None;
        }
    };
    let _in_flight = stamp.started();
    let (mut send, recv) = stream.split();
    let (parts, ()) = head.into_parts();
    let early = arrival.early.is_some();
    match arrival.settings.verdict(early, &parts.method, &parts.uri) {
        Verdict::Serve => {}
        Verdict::TooEarly => {
            arrival.metrics.early_request(EarlyOutcome::TooEarly);
            let mut response = Response::new(http_body_util::Empty::<Bytes>::new());
            *response.status_mut() = StatusCode::TOO_EARLY;
            stamp.apply(response.status(), response.headers_mut());
            if let Err(err) = respond(&mut send, response).await {
                tracing::debug!(err = %err.message(), "425 not delivered");
            }
            return Some(StatusCode::TOO_EARLY);
        }
        Verdict::Hold => {
            arrival.metrics.early_request(EarlyOutcome::Held);
            let mut waiter = arrival.early?;
            // Closed: the handshake failed and the connection is going (a replay, maybe).
            waiter.wait_for(|done| *done).await.ok()?;
        }
    }
    if early {
        arrival.metrics.early_request(EarlyOutcome::Served);
    }
    let mut request = Request::from_parts(parts, RequestBody::new(recv));
    request.extensions_mut().insert(info);
    request.extensions_mut().insert(EarlyData(early));

    let outcome = service
        .oneshot(request)
        .await
        .map_err(Into::<BoxError>::into);
    let (status, sent) = match outcome {
        Ok(mut response) => {
            stamp.apply(response.status(), response.headers_mut());
            (response.status(), respond(&mut send, response).await)
        }
        Err(err) => {
            tracing::warn!(%err, "handler failed");
            let mut response = Response::new(http_body_util::Empty::<Bytes>::new());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            stamp.apply(response.status(), response.headers_mut());
            (response.status(), respond(&mut send, response).await)
        }
    };
    match sent {
        Ok(()) => {}
        Err(ResponseError::Body(err)) => {
            tracing::debug!(%err, "response body failed: resetting the stream");
            send.stop_stream(Code::H3_INTERNAL_ERROR);
        }
        Err(ResponseError::Stream(err)) => tracing::debug!(%err, "response not delivered"),
    }
    Some(status)
}

/// Why a response did not go out whole.
enum ResponseError {
    /// The response body yielded an error.
    Body(BoxError),
    /// The stream or connection failed (the client reset it, the connection closed).
    Stream(h3::error::StreamError),
}

impl ResponseError {
    fn message(&self) -> String {
        match self {
            Self::Body(err) => err.to_string(),
            Self::Stream(err) => err.to_string(),
        }
    }
}

impl From<h3::error::StreamError> for ResponseError {
    fn from(err: h3::error::StreamError) -> Self {
        Self::Stream(err)
    }
}

/// Sends the head, every DATA and trailers frame of `response`, and the end of the stream.
async fn respond<B: ResponseBody>(
    send: &mut SendStream,
    response: Response<B>,
) -> Result<(), ResponseError> {
    let (parts, body) = response.into_parts();
    send.send_response(Response::from_parts(parts, ())).await?;
    let mut body = pin!(body);
    loop {
        let frame = match body.frame().await {
            None => break,
            Some(frame) => frame.map_err(|err| ResponseError::Body(err.into()))?,
        };
        match frame.into_data() {
            Ok(mut data) => {
                if data.has_remaining() {
                    send.send_data(data.copy_to_bytes(data.remaining())).await?;
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                }
            }
        }
    }
    send.finish().await?;
    Ok(())
}
