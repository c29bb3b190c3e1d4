//! Serves an ordinary axum `Router` (plus the built-in routes) over HTTP/3 with QUIC-LB
//! connection IDs, until Ctrl-C, then shuts down gracefully.
//!
//! ```text
//! cargo run -p qlb-server --example axum_router -- 127.0.0.1:4433
//! ```

use std::time::Duration;

use axum::extract::Path;
use axum::routing::get;
use axum::{Extension, Router};
use qlb_server::{ConnectionInfo, Server, builtin_routes};
use quic_lb::{Config, ConfigId, Key};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt::init();
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4433".to_string())
        .parse()?;
    let key: Key = "8f95f09245765f80256934e50c66207f".parse()?;
    let config = Config::new(ConfigId::new(0)?, 2, 6, Some(key))?;
    let server = Server::builder(config, "0a01".parse()?)
        .name("example")
        .cluster_secret(b"example cluster secret")
        .bind(addr)?;

    let app = Router::new()
        .route(
            "/hello/{name}",
            get(
                |Path(name): Path<String>, Extension(info): Extension<ConnectionInfo>| async move {
                    format!(
                        "hello {name}, you are {} on {}\n",
                        info.peer, info.server_name
                    )
                },
            ),
        )
        .merge(builtin_routes(server.drain_state()));

    println!("serving HTTP/3 on {}", server.local_addr()?);
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(app).await }
    });
    tokio::signal::ctrl_c().await?;
    server.shutdown(Duration::from_secs(10)).await;
    serving.await?;
    Ok(())
}
