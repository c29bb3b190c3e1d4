//! A handler that holds a request open until the test releases it, for requests that must
//! be in flight at a chosen moment.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use qlb_server::{Server, ServerBuilder, builtin_routes};
use tokio::sync::{Notify, mpsc};

use qlb_testkit::within;

use super::{Running, TestResult, start};

/// `GET /hold` reports that it started, then waits until released; it answers whether the
/// server was draining by then ("draining" or "serving").
pub(crate) struct Hold {
    started: mpsc::UnboundedReceiver<()>,
    release: Arc<Notify>,
}

impl Hold {
    /// Waits until a `/hold` request has reached its handler.
    pub(crate) async fn started(&mut self) -> TestResult {
        within(Duration::from_secs(5), "a /hold request to start", async {
            self.started.recv().await;
        })
        .await
    }

    /// Lets one held request answer.
    pub(crate) fn release(&self) {
        self.release.notify_one();
    }
}

/// A server with `/hold` and the built-in routes.
pub(crate) fn start_with_hold(builder: ServerBuilder) -> TestResult<(Running, Hold)> {
    let (started_tx, started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let released = release.clone();
    let running = start(builder, move |server: &Server| {
        let drain = server.drain_state();
        Router::new()
            .route(
                "/hold",
                get(move || async move {
                    let _ = started_tx.send(());
                    released.notified().await;
                    if drain.is_draining() {
                        "draining"
                    } else {
                        "serving"
                    }
                }),
            )
            .merge(builtin_routes(server.drain_state()))
    })?;
    Ok((running, Hold { started, release }))
}
