//! The client's integration-test harness over the shared test kit (qlb-testkit):
//! qlb-server backends on loopback, a raw h3 server that refuses requests, a bounded load
//! loop, a DNS server, migration peers. Each test binary uses a different subset.
#![allow(dead_code)]

pub(crate) mod dns;
pub(crate) mod load;
pub(crate) mod migration;
pub(crate) mod refuser;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use qlb_client::{Client, ClientBuilder, HealthCheck, Target, Trust};
use qlb_server::{Identity, Server, builtin_routes};
use qlb_testkit::{SelfSigned, fixtures, init_tracing};

pub(crate) use qlb_testkit::TestResult;

/// Generous bound for anything that should happen "soon" on a loaded 2-core machine.
pub(crate) const SOON: Duration = Duration::from_secs(10);

/// A qlb-server backend serving the built-in routes and `/ready` (200, or 503 once
/// [`Backend::set_ready`] says so); it may fail every other request
/// ([`Backend::fail_half`]) and report a load of the test's choosing
/// ([`Backend::report_utilization`]).
pub(crate) struct Backend {
    pub server: Server,
    pub addr: SocketAddr,
    pub name: String,
    ready: Arc<AtomicBool>,
    behaviour: Arc<Behaviour>,
}

/// How a test backend bends its answers.
#[derive(Default)]
struct Behaviour {
    fail_half: AtomicBool,
    answered: AtomicU64,
    /// Reported as `utilization=U, qps=100` in place of the server's own report.
    utilization: Mutex<Option<f64>>,
}

impl Behaviour {
    fn apply(&self, response: Response) -> Response {
        let odd = self.answered.fetch_add(1, Ordering::SeqCst) % 2 == 1;
        let mut response = if odd && self.fail_half.load(Ordering::SeqCst) {
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        } else {
            response
        };
        let utilization = *self
            .utilization
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(utilization) = utilization {
            let report = format!("utilization={utilization}, qps=100");
            if let Ok(value) = http::HeaderValue::try_from(report) {
                response
                    .headers_mut()
                    .insert(qlb_server::LOAD_HEADER, value);
            }
        }
        response
    }
}

impl Backend {
    /// Backend `name` with server ID `server_id` (4 hex digits) on a free loopback port.
    pub(crate) fn start(name: &str, server_id: &str) -> TestResult<Self> {
        Self::start_with(name, server_id, "127.0.0.1:0".parse()?, |builder| builder)
    }

    /// Like [`Backend::start`], on `addr`, with the server builder adjusted by `adjust`.
    pub(crate) fn start_with(
        name: &str,
        server_id: &str,
        addr: SocketAddr,
        adjust: impl FnOnce(qlb_server::ServerBuilder) -> qlb_server::ServerBuilder,
    ) -> TestResult<Self> {
        init_tracing();
        let generated = SelfSigned::localhost()?;
        let builder = Server::builder(fixtures::config(0), server_id.parse()?)
            .name(name)
            .identity(Identity::new(
                vec![generated.certificate().clone()],
                generated.private_key(),
            ));
        let server = adjust(builder).bind(addr)?;
        let ready = Arc::new(AtomicBool::new(true));
        let behaviour = Arc::new(Behaviour::default());
        let app = builtin_routes(server.drain_state())
            .route(
                "/ready",
                get({
                    let ready = ready.clone();
                    move || async move {
                        if ready.load(Ordering::SeqCst) {
                            StatusCode::OK
                        } else {
                            StatusCode::SERVICE_UNAVAILABLE
                        }
                    }
                }),
            )
            .layer(axum::middleware::map_response({
                let behaviour = behaviour.clone();
                move |response: Response| {
                    let behaviour = behaviour.clone();
                    async move { behaviour.apply(response) }
                }
            }));
        tokio::spawn({
            let server = server.clone();
            async move { server.serve(app).await }
        });
        Ok(Self {
            addr: server.local_addr()?,
            server,
            name: name.to_owned(),
            ready,
            behaviour,
        })
    }

    /// From now on, every other response is a 500 (true), or none (false).
    pub(crate) fn fail_half(&self, fail: bool) {
        self.behaviour.fail_half.store(fail, Ordering::SeqCst);
    }

    /// Report `utilization` (with 100 qps) in every response's load report; None: the
    /// server's own report.
    pub(crate) fn report_utilization(&self, utilization: Option<f64>) {
        *self
            .behaviour
            .utilization
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = utilization;
    }

    /// Makes `/ready` answer 200 (true) or 503 (false).
    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }
}

/// Health checks of [`Backend`]'s `/ready`, tolerant enough that a loaded machine does not
/// fail the live backends' checks.
pub(crate) fn ready_check() -> HealthCheck {
    HealthCheck {
        path: "/ready".to_owned(),
        interval: Duration::from_millis(500),
        timeout: Duration::from_millis(500),
        healthy_threshold: 1,
        unhealthy_threshold: 2,
    }
}

/// `count` backends named `{prefix}1..` on free loopback ports.
pub(crate) fn backends(prefix: &str, count: usize) -> TestResult<Vec<Backend>> {
    (1..=count)
        .map(|i| Backend::start(&format!("{prefix}{i}"), &format!("{i:04x}")))
        .collect()
}

/// A client builder for `target` (insecure trust, server name localhost, 10 s timeout).
pub(crate) fn client(target: impl Into<Target>) -> ClientBuilder {
    Client::builder(target.into(), Trust::Insecure)
        .server_name("localhost")
        .timeout(SOON)
}

/// GETs `path` and returns the status and the whole body.
pub(crate) async fn fetch(
    client: &Client,
    path: &str,
) -> TestResult<(http::StatusCode, bytes::Bytes)> {
    let response = client
        .send(http::Request::get(path).body(String::new())?)
        .await?;
    let status = response.status();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

/// The name of the backend that answered `/whoami`.
pub(crate) async fn whoami(client: &Client) -> TestResult<String> {
    let (status, body) = fetch(client, "/whoami").await?;
    if status != http::StatusCode::OK {
        return Err(format!("/whoami answered {status}").into());
    }
    let json: serde_json::Value = serde_json::from_slice(&body)?;
    Ok(json["name"].as_str().ok_or("no name")?.to_owned())
}
