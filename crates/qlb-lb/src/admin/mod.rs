//! The admin HTTP API (axum, HTTP/1.1), run by the [`Balancer`](crate::Balancer) on `admin.listen`:
//!
//! | request | answer |
//! | --- | --- |
//! | `GET /` | 200, the operators' [`dashboard`] (HTML), live from `/status` |
//! | `GET /status` | 200, the [`Status`](crate::daemon::Status) as JSON |
//! | `POST /backends/{name}/drain` | 200 `{"name", "admin_override", "effective_state"}`; 404 for an unknown name |
//! | `POST /backends/{name}/undrain` | the same; the backend goes back to its configured state |
//! | `POST /reload` | 200, the [`ReloadReport`](crate::daemon::ReloadReport) as JSON; 422 with `{"error"}` naming the field for a refused configuration, 500 if the file cannot be read |
//! | `GET /metrics` | 200, Prometheus (OpenMetrics) text |
//!
//! When a token is configured (`admin.token_file` or `admin.token`, required unless the
//! address is loopback), every request must carry `Authorization: Bearer <token>`, or
//! HTTP Basic credentials with the token as the password (what a browser opening the
//! dashboard can send: it asks for them); the comparison takes the same time wherever the
//! first difference is. Otherwise the answer is 401 with `WWW-Authenticate: Bearer` and
//! `Basic`. The token is never logged.
//!
//! Before the token, every request's `Host` must be one of the API's names (`localhost`, an
//! IP literal, or one of `admin.allowed_hosts`; otherwise 421) and a `POST`'s `Origin`
//! absent or the API's own (otherwise 403), so that a web page cannot drive the API through
//! DNS rebinding or a cross-site form ([`host`] says why). Refusals are counted by reason.

mod dashboard;
mod host;
mod metrics;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Serialize;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::Secret;
use crate::control_plane::{AdminOverride, AdminRefusal, ControlPlane, ReloadError};
use metrics::CONTENT_TYPE as METRICS_CONTENT_TYPE;
pub use metrics::encode as encode_metrics;

/// How long a shutdown waits for admin requests in progress.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The running admin server; dropping it stops it at once.
#[derive(Debug)]
#[must_use = "dropping the admin server stops it at once"]
pub(crate) struct AdminServer {
    /// Taken by `stop`.
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl AdminServer {
    /// Serves the admin API on `listener` for the balancer behind `control`, until stopped.
    pub(crate) fn spawn(listener: TcpListener, control: Weak<ControlPlane>) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let app = router(control);
        let task = tokio::spawn(async move {
            let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
                stopped.await.ok();
            });
            if let Err(err) = serving.await {
                tracing::error!(%err, "the admin API failed");
            }
        });
        Self {
            stop: Some(stop),
            task,
        }
    }

    /// Stops accepting and waits (a little) for requests in progress.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        // Past the timeout, dropping `self` aborts the task.
        tokio::time::timeout(STOP_TIMEOUT, &mut self.task)
            .await
            .ok();
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        // The balancer is gone (or the server has stopped already: then this does nothing).
        self.task.abort();
    }
}

/// The admin API's routes for the balancer behind `control`.
fn router(control: Weak<ControlPlane>) -> axum::Router {
    axum::Router::new()
        .route("/", get(dashboard::page))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .route("/reload", post(reload))
        .route("/backends/{name}/drain", post(drain))
        .route("/backends/{name}/undrain", post(undrain))
        .layer(middleware::from_fn_with_state(control.clone(), authorize))
        .with_state(control)
}

/// A JSON error body: `{"error": "..."}`.
fn error(status: StatusCode, message: impl Into<String>) -> Response {
    #[derive(Serialize)]
    struct Error {
        error: String,
    }
    (
        status,
        Json(Error {
            error: message.into(),
        }),
    )
        .into_response()
}

/// The balancer behind the admin API, as an extractor: 503 once it is gone.
struct Live(Arc<ControlPlane>);

impl FromRequestParts<Weak<ControlPlane>> for Live {
    type Rejection = Response;

    async fn from_request_parts(
        _parts: &mut Parts,
        control: &Weak<ControlPlane>,
    ) -> Result<Self, Self::Rejection> {
        control.upgrade().map(Self).ok_or_else(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the load balancer has stopped",
            )
        })
    }
}

async fn authorize(Live(control): Live, request: Request, next: Next) -> Response {
    let admin = control.admin_config();
    let allowed_hosts = admin.as_ref().map_or(&[][..], |a| &a.allowed_hosts);
    if let Err(refused) = host::check(request.method(), request.headers(), allowed_hosts) {
        control.count_admin_refusal(refused.reason);
        return error(refused.status, refused.message);
    }
    if let Some(refusal) = refusal(
        admin.as_ref().and_then(|a| a.token.as_ref()),
        control.addresses().admin,
        request.headers().get(header::AUTHORIZATION),
    ) {
        control.count_admin_refusal(AdminRefusal::Token);
        return refusal;
    }
    next.run(request).await
}

/// Why a request may not proceed, if it may not. Fails closed: a non-loopback admin address
/// without a token (which the configuration refuses) lets nothing through.
fn refusal(
    token: Option<&Secret>,
    admin: Option<SocketAddr>,
    authorization: Option<&header::HeaderValue>,
) -> Option<Response> {
    let Some(token) = token else {
        return match admin {
            Some(addr) if !addr.ip().is_loopback() => Some(error(
                StatusCode::FORBIDDEN,
                "admin.token_file: required when admin.listen is not a loopback address",
            )),
            _ => None,
        };
    };
    let given = authorization.and_then(presented_token);
    let accepted = given.is_some_and(|given| bool::from(given.ct_eq(token.as_bytes())));
    if accepted {
        return None;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "a bearer token is required: Authorization: Bearer <admin token>",
    );
    let headers = response.headers_mut();
    headers.insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    // Makes a browser ask for the token (as the password) when it opens the dashboard.
    headers.append(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Basic realm=\"qlb admin\", charset=\"UTF-8\""),
    );
    Some(response)
}

/// The token an `Authorization` header presents: a bearer token, or the password of Basic
/// credentials (any user name).
fn presented_token(authorization: &header::HeaderValue) -> Option<Vec<u8>> {
    let (scheme, credentials) = host::authorization(authorization)?;
    if scheme.eq_ignore_ascii_case("bearer") {
        return Some(credentials.as_bytes().to_vec());
    }
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(credentials)
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    Some(decoded[colon + 1..].to_vec())
}

async fn status(Live(control): Live) -> Response {
    Json(control.status().await).into_response()
}

async fn metrics(Live(control): Live) -> Response {
    match encode_metrics(control.status().await) {
        Ok(text) => ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], text).into_response(),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode the metrics",
        ),
    }
}

async fn reload(Live(control): Live) -> Response {
    match control.reload().await {
        Ok(report) => Json(report).into_response(),
        Err(err) => {
            let status = match &err {
                err if err.is_invalid_config() => StatusCode::UNPROCESSABLE_ENTITY,
                ReloadError::NoConfigFile => StatusCode::CONFLICT,
                ReloadError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, err.to_string())
        }
    }
}

async fn drain(balancer: Live, name: Path<String>) -> Response {
    set_drained(balancer, name, true).await
}

async fn undrain(balancer: Live, name: Path<String>) -> Response {
    set_drained(balancer, name, false).await
}

async fn set_drained(Live(control): Live, Path(name): Path<String>, drained: bool) -> Response {
    #[derive(Serialize)]
    struct Drained {
        name: String,
        admin_override: Option<AdminOverride>,
        effective_state: &'static str,
    }
    let result = control.set_drained(&name, drained).await;
    match result {
        Ok(state) => Json(Drained {
            name,
            admin_override: drained.then_some(AdminOverride::Drain),
            effective_state: state.as_str(),
        })
        .into_response(),
        Err(err) => error(StatusCode::NOT_FOUND, err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: &str) -> header::HeaderValue {
        header::HeaderValue::from_str(value).expect("header")
    }

    #[test]
    fn the_token_is_required_exactly_when_configured() {
        let token = Secret::new(b"s3cret".to_vec());
        let loopback: SocketAddr = "127.0.0.1:9901".parse().expect("addr");
        let anywhere: SocketAddr = "0.0.0.0:9901".parse().expect("addr");
        let status = |token, admin, value: Option<&str>| {
            refusal(token, Some(admin), value.map(header).as_ref()).map(|r| r.status())
        };
        assert_eq!(status(None, loopback, None), None);
        assert_eq!(
            status(None, anywhere, None),
            Some(StatusCode::FORBIDDEN),
            "fails closed"
        );
        for accepted in [
            "Bearer s3cret",
            "bearer  s3cret ",
            "BEARER s3cret",
            // admin:s3cret and :s3cret, as a browser sends what it was given.
            "Basic YWRtaW46czNjcmV0",
            "basic OnMzY3JldA==",
        ] {
            assert_eq!(
                status(Some(&token), anywhere, Some(accepted)),
                None,
                "{accepted}"
            );
        }
        for refused in [
            None,
            Some("s3cret"),
            Some("Basic s3cret"),
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("Bearer "),
            // s3cret (no colon), admin:s3cre, not base64.
            Some("Basic czNjcmV0"),
            Some("Basic YWRtaW46czNjcmU="),
            Some("Basic %%%"),
        ] {
            assert_eq!(
                status(Some(&token), loopback, refused),
                Some(StatusCode::UNAUTHORIZED),
                "{refused:?}"
            );
        }
    }
}
