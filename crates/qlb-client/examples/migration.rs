//! Explicit connection migration, as a phone moving from Wi-Fi to cellular would do it: one
//! [`Connection`] to an HTTP/3 backend (qlb-server, on loopback), then a new local socket
//! added as a [`Path`](qlb_client::Path), probed (a round trip on the new path, nothing
//! moved yet), and switched to. The server sees the client's new address; the connection,
//! its streams and its request count carry on.
//!
//! ```text
//! cargo run -p qlb-client --example migration
//! ```

use std::net::UdpSocket;
use std::time::Duration;

use http_body_util::BodyExt;
use qlb_client::{Connection, Trust};
use qlb_server::{Server, builtin_routes};
use quic_lb::{Config, ConfigId};

type Result<T, E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

#[tokio::main]
async fn main() -> Result<()> {
    let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    let server = Server::builder(config, "0a01".parse()?)
        .name("backend")
        .bind("127.0.0.1:0".parse()?)?;
    let addr = server.local_addr()?;
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(builtin_routes(server.drain_state())).await }
    });

    let connection = Connection::connect(addr, "localhost", &Trust::Insecure).await?;
    let before = whoami(&connection).await?;
    println!("before: the server sees {}", before["peer"]);

    // Add a path from a new local socket and probe it: the old path still carries the
    // connection meanwhile.
    let path = connection.add_path(UdpSocket::bind("127.0.0.1:0")?)?;
    let rtt = path.probe(Duration::from_secs(5)).await?;
    println!("probed {} in {rtt:?}", path.local_addr());
    // Switch: the connection moves; the switch is confirmed by traffic on the new path and
    // rolled back if none comes.
    path.switch().await?;

    let after = whoami(&connection).await?;
    println!(
        "after:  the server sees {} (request {} on the same connection)",
        after["peer"], after["requests_on_connection"]
    );
    assert_ne!(before["peer"], after["peer"]);
    server.shutdown(Duration::from_secs(1)).await;
    Ok(())
}

/// The server's `/whoami` answer on `connection`.
async fn whoami(connection: &Connection) -> Result<serde_json::Value> {
    let response = connection
        .send(http::Request::get("/whoami").body(String::new())?)
        .await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}
