//! The point of the product, with the client and the load balancer together: a qlb-client
//! connection that switches to new paths behind the load balancer's data plane arrives as a
//! new flow each time, which the load balancer routes by connection ID to the same backend.

use std::net::{SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use qlb_client::{Connection, Trust};
use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
use qlb_router::{Backend as PoolBackend, Pool, Route};
use qlb_server::{Identity, Server, builtin_routes};
use qlb_testkit::{SelfSigned, TestResult, fixtures, init_tracing, within};

/// The longest anything that should happen at once may take on a loaded machine.
const WAIT: Duration = Duration::from_secs(20);
/// A generous probe timeout for paths that work.
const PROBE: Duration = Duration::from_secs(5);
/// The backends' QUIC-LB codepoint.
const CODEPOINT: u8 = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switches_through_the_load_balancer_stay_on_the_backend() -> TestResult {
    const SWITCHES: usize = 5;
    init_tracing();
    let identity = SelfSigned::localhost()?;
    let backends = ["0001", "0002"]
        .into_iter()
        .map(|server_id| start_backend(server_id, &identity))
        .collect::<TestResult<Vec<_>>>()?;
    let pool = Pool::new(
        fixtures::decoder(&[CODEPOINT]),
        backends.iter().map(|(server, addr)| {
            PoolBackend::new(server.server_id().to_string(), *addr)
                .with_server_id(fixtures::config(CODEPOINT).id(), *server.server_id())
        }),
    )?;
    let dataplane = Dataplane::start(
        &["127.0.0.1:0".parse()?],
        NonZeroUsize::MIN,
        Arc::new(pool),
        DataplaneOptions::default(),
    )?;
    let trust = Trust::Roots(vec![identity.certificate().clone()]);
    let connection = within(
        WAIT,
        "the handshake",
        Connection::connect(dataplane.local_addrs()[0], "localhost", &trust),
    )
    .await??;

    let first = whoami(&connection).await?;
    let mut flows: Vec<SocketAddr> = vec![first["peer"].as_str().ok_or("peer")?.parse()?];
    for _ in 0..SWITCHES {
        let path = connection.add_path(UdpSocket::bind("127.0.0.1:0")?)?;
        path.probe(PROBE).await?;
        path.switch().await?;
        let whoami = whoami(&connection).await?;
        assert_eq!(whoami["server_id"], first["server_id"], "{whoami}");
        flows.push(whoami["peer"].as_str().ok_or("peer")?.parse()?);
    }
    // Each path reached the backend as a flow of its own (the load balancer's upstream
    // socket for it), routed by connection ID.
    flows.dedup();
    assert_eq!(flows.len(), SWITCHES + 1, "{flows:?}");
    let stats = dataplane.stats();
    assert!(
        stats.flows_created > SWITCHES as u64,
        "{}",
        stats.flows_created
    );
    assert!(stats.router.routed(Route::Cid) > 0);
    for (server, _) in backends {
        server.shutdown(Duration::ZERO).await;
    }
    Ok(())
}

/// A qlb-server backend with the built-in routes on a free loopback port, presenting
/// `identity`.
fn start_backend(server_id: &str, identity: &SelfSigned) -> TestResult<(Server, SocketAddr)> {
    let server = Server::builder(fixtures::config(CODEPOINT), server_id.parse()?)
        .identity(Identity::new(
            vec![identity.certificate().clone()],
            identity.private_key(),
        ))
        .bind("127.0.0.1:0".parse()?)?;
    let addr = server.local_addr()?;
    tokio::spawn({
        let server = server.clone();
        async move { server.serve(builtin_routes(server.drain_state())).await }
    });
    Ok((server, addr))
}

/// The backend's `/whoami` on `connection`, within [`WAIT`].
async fn whoami(connection: &Connection) -> TestResult<serde_json::Value> {
    let request = http::Request::get("/whoami").body(String::new())?;
    let response = within(WAIT, "GET /whoami", connection.send(request)).await??;
    if response.status() != http::StatusCode::OK {
        return Err(format!("GET /whoami: {}", response.status()).into());
    }
    let body = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}
