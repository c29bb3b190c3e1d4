//! A client that balances its own requests: three HTTP/3 backends (qlb-server, on
//! loopback), one [`Client`] over a [`BackendList`] with the power-of-two-choices picker and
//! two connections per backend. It sends 60 requests, then takes one backend out of the
//! list (as a resolver would when a pod goes away) and sends 60 more, and prints who served
//! what.
//!
//! ```text
//! cargo run -p qlb-client --example balancing
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::BodyExt;
use qlb_client::{BackendList, Client, PickerKind, Trust};
use qlb_server::{Server, builtin_routes};
use quic_lb::{Config, ConfigId};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut servers = Vec::new();
    for (name, server_id) in [("alpha", "0001"), ("beta", "0002"), ("gamma", "0003")] {
        servers.push(start_backend(name, server_id)?);
    }
    let list = BackendList::new(servers.iter().map(|(_, addr)| *addr));
    let client = Client::builder(list.clone().into(), Trust::Insecure)
        .server_name("localhost")
        .picker(PickerKind::PowerOfTwoChoices)
        .min_connections(2)
        .timeout(Duration::from_secs(10))
        .build()?;

    println!("all three backends: {:?}", served_by(&client, 60).await?);
    // The resolver's view changes: gamma leaves. Its connections drain; nothing fails.
    list.set(servers.iter().take(2).map(|(_, addr)| *addr));
    while client.snapshot().backends.len() > 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("gamma removed:      {:?}", served_by(&client, 60).await?);

    let snapshot = client.snapshot();
    println!(
        "the backends still listed served {} requests, {} retried",
        snapshot.requests(),
        snapshot.retries
    );
    for (server, _) in servers {
        server.shutdown(Duration::from_secs(1)).await;
    }
    Ok(())
}

/// A qlb-server backend with the built-in routes (`/whoami` says its name) on a free port.
fn start_backend(
    name: &str,
    server_id: &str,
) -> Result<(Server, SocketAddr), Box<dyn std::error::Error + Send + Sync>> {
    let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    let server = Server::builder(config, server_id.parse()?)
        .name(name)
        .bind("127.0.0.1:0".parse()?)?;
    let addr = server.local_addr()?;
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(builtin_routes(server.drain_state())).await }
    });
    Ok((server, addr))
}

/// Sends `count` `GET /whoami` requests; counts the answers by backend name.
async fn served_by(
    client: &Client,
    count: usize,
) -> Result<BTreeMap<String, usize>, Box<dyn std::error::Error + Send + Sync>> {
    let mut served = BTreeMap::new();
    for _ in 0..count {
        let response = client
            .send(http::Request::get("/whoami").body(String::new())?)
            .await?;
        let body = response.into_body().collect().await?.to_bytes();
        let whoami: serde_json::Value = serde_json::from_slice(&body)?;
        let name = whoami["name"].as_str().unwrap_or("?").to_owned();
        *served.entry(name).or_default() += 1;
    }
    Ok(served)
}
