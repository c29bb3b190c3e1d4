//! The built-in routes of `qlb serve`, as an axum [`Router`] any server can mount:
//! `/whoami`, `/healthz`, `/bytes/N`, `/delay/MS`, `/echo`.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::Bytes;
use http_body::Frame;

use crate::{ConnectionInfo, DrainState};

/// The routes every qlb backend answers, for load balancer health checks, tests and demos:
///
/// * `GET /whoami`: JSON `{"server_id", "name", "peer", "connection_age_ms",
///   "requests_on_connection"}` from the request's [`ConnectionInfo`];
/// * `GET /healthz`: 200, or 503 once `drain` says the server is draining;
/// * `GET /bytes/N`: N octets, streamed;
/// * `GET /delay/MS`: 200 after MS milliseconds;
/// * `POST /echo`: the request body, streamed back.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use qlb_server::{Server, builtin_routes};
/// use quic_lb::{Config, ConfigId};
///
/// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
/// let server = Server::builder(config, "0001".parse()?).bind("127.0.0.1:0".parse()?)?;
/// let app = builtin_routes(server.drain_state()).route("/hello", axum::routing::get(|| async { "hi" }));
/// tokio::spawn({
///     let server = server.clone();
///     async move { server.serve(app).await }
/// });
/// server.shutdown(std::time::Duration::from_secs(1)).await;
/// # Ok(())
/// # }
/// ```
pub fn builtin_routes(drain: DrainState) -> Router {
    Router::new()
        .route("/whoami", get(whoami))
        .route("/healthz", get(move || healthz(drain.clone())))
        .route("/bytes/{count}", get(bytes))
        .route("/delay/{millis}", get(delay))
        .route("/echo", post(echo))
}

async fn whoami(Extension(info): Extension<ConnectionInfo>) -> Response {
    let body = serde_json::json!({
        "server_id": info.server_id.to_string(),
        "name": &*info.server_name,
        "peer": info.peer.to_string(),
        "connection_age_ms": u64::try_from(info.age().as_millis()).unwrap_or(u64::MAX),
        "requests_on_connection": info.request_ordinal,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn healthz(drain: DrainState) -> (StatusCode, &'static str) {
    if drain.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

async fn bytes(Path(count): Path<u64>) -> Response {
    (
        [(header::CONTENT_LENGTH, count.to_string())],
        Body::new(ZeroBody { remaining: count }),
    )
        .into_response()
}

async fn delay(Path(millis): Path<u64>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(millis)).await;
    "ok\n"
}

async fn echo(body: Body) -> Body {
    body
}

/// `remaining` zero octets, in chunks, without allocating per chunk.
struct ZeroBody {
    remaining: u64,
}

/// The largest chunk `ZeroBody` yields.
static ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];

impl http_body::Body for ZeroBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = usize::try_from(self.remaining).map_or(ZEROS.len(), |r| r.min(ZEROS.len()));
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&ZEROS[..len])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    use http_body_util::BodyExt;
    use tokio::sync::watch;
    use tower::ServiceExt;

    fn info() -> ConnectionInfo {
        ConnectionInfo {
            server_id: "0a0b".parse().expect("hex"),
            server_name: "alpha".into(),
            peer: "192.0.2.7:5555".parse().expect("addr"),
            connected_at: Instant::now() - Duration::from_millis(1500),
            request_ordinal: 3,
        }
    }

    async fn call(app: Router, method: &str, uri: &str, body: &'static str) -> (StatusCode, Bytes) {
        let mut request = http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body))
            .expect("request");
        request.extensions_mut().insert(info());
        let response = app.oneshot(request).await.expect("infallible");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, body)
    }

    #[tokio::test]
    async fn whoami_reports_the_connection() {
        let (_sender, receiver) = watch::channel(None);
        let (status, body) = call(
            builtin_routes(DrainState::new(receiver)),
            "GET",
            "/whoami",
            "",
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(json["server_id"], "0a0b");
        assert_eq!(json["name"], "alpha");
        assert_eq!(json["peer"], "192.0.2.7:5555");
        assert_eq!(json["requests_on_connection"], 3);
        assert!(json["connection_age_ms"].as_u64().expect("number") >= 1500);
    }

    #[tokio::test]
    async fn healthz_turns_503_when_draining() {
        let (sender, receiver) = watch::channel(None);
        let app = builtin_routes(DrainState::new(receiver));
        assert_eq!(
            call(app.clone(), "GET", "/healthz", "").await.0,
            StatusCode::OK
        );
        sender.send_replace(Some(Instant::now()));
        assert_eq!(
            call(app, "GET", "/healthz", "").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }

    #[tokio::test]
    async fn bytes_delay_and_echo() {
        let (_sender, receiver) = watch::channel(None);
        let app = builtin_routes(DrainState::new(receiver));
        for count in [0usize, 1, 16 * 1024, 100_000] {
            let (status, body) = call(app.clone(), "GET", &format!("/bytes/{count}"), "").await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(body.len(), count);
        }
        assert_eq!(
            call(app.clone(), "GET", "/bytes/x", "").await.0,
            StatusCode::BAD_REQUEST
        );
        let started = Instant::now();
        assert_eq!(
            call(app.clone(), "GET", "/delay/50", "").await.0,
            StatusCode::OK
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
        let (status, body) = call(app, "POST", "/echo", "hello").await;
        assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello"[..]));
    }
}
