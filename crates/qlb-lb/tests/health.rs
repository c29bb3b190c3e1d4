//! Health checks against real HTTP/3 backends (qlb-server) through a real load balancer: a
//! backend that dies is taken out of new connections' choices, and put back when it returns;
//! one that drains gets no new connections but finishes its own; status and metrics say so,
//! and new client connections show it.

mod quic;

use std::collections::BTreeSet;

use qlb_lb::daemon::Health;
use qlb_router::BackendState;
use qlb_testkit::{TestResult, eventually, fetch};
use quic::{
    Backend, FAST_HEALTH, NO_HEALTH, Setup, WAIT, backend_status, connection_to,
    new_connections_reach, setup, setup_up,
};

async fn health_of(balancer: &qlb_lb::Balancer, name: &str) -> Option<Health> {
    balancer
        .status()
        .await
        .backends
        .into_iter()
        .find(|b| b.name == name)
        .and_then(|b| b.health.map(|h| h.state))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_that_dies_is_avoided_until_it_comes_back() -> TestResult {
    let Setup {
        backends: [b1, _b2],
        balancer,
        lb,
        ..
    } = setup_up(FAST_HEALTH).await?;
    // A connection established on b2 before b1 dies.
    let mut on_b2 = connection_to(lb, "b2").await?;

    b1.kill().await;
    eventually(WAIT, "b1 down", || async {
        health_of(&balancer, "b1").await == Some(Health::Down)
    })
    .await?;
    let b1_status = backend_status(&balancer, "b1").await;
    assert_eq!(b1_status["effective_state"], "down");
    assert_eq!(b1_status["configured_state"], "active");
    assert!(
        b1_status["health"]["last_failure"]
            .as_str()
            .is_some_and(|why| !why.is_empty()),
        "{b1_status}"
    );
    let reached: BTreeSet<String> = new_connections_reach(lb, 8).await?.into_iter().collect();
    assert_eq!(reached, BTreeSet::from(["b2".to_owned()]));
    assert_eq!(on_b2.backend().await?, "b2", "b2's connections carry on");

    let b1 = Backend::start_at("b1", "0001", 0, {
        // The old address, so that the configuration still names it.
        let status = backend_status(&balancer, "b1").await;
        status["addr"].as_str().ok_or("addr")?.parse()?
    })?;
    eventually(WAIT, "b1 up again", || async {
        health_of(&balancer, "b1").await == Some(Health::Up)
    })
    .await?;
    connection_to(lb, "b1").await?;
    let health = backend_status(&balancer, "b1").await["health"].clone();
    assert_eq!(health["transitions_down"], 1, "{health}");
    assert_eq!(
        health["transitions_up"], 2,
        "the first check, then the return: {health}"
    );
    assert_eq!(
        balancer.status().await.backends[1].effective_state,
        BackendState::Active
    );

    let metrics = qlb_lb::admin::encode_metrics(balancer.status().await)?;
    for line in [
        "qlb_lb_health_transitions_total{backend=\"b1\",to=\"down\"} 1",
        "qlb_lb_backend_health{backend=\"b1\",state=\"up\"} 1",
        "qlb_lb_backend_state{backend=\"b2\",state=\"active\"} 1",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    balancer.shutdown().await?;
    drop(b1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_backend_is_unready_and_keeps_its_connections() -> TestResult {
    let Setup {
        backends: [b1, _b2],
        balancer,
        lb,
        ..
    } = setup_up(FAST_HEALTH).await?;
    let on_b1 = connection_to(lb, "b1").await?;
    // A long request keeps the connection open through b1's graceful shutdown.
    let in_flight = {
        let mut send = on_b1.sender();
        tokio::spawn(async move { fetch(&mut send, "GET", "/delay/4000", Vec::new()).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let draining = {
        let server = b1.server.clone();
        tokio::spawn(async move { server.shutdown(std::time::Duration::from_secs(20)).await })
    };
    eventually(
        WAIT,
        "b1 unready: /healthz answers 503, new handshakes are refused",
        || async { health_of(&balancer, "b1").await == Some(Health::Unready) },
    )
    .await?;
    // Unready, not down: its connection's packets still reach it.
    assert_eq!(
        backend_status(&balancer, "b1").await["effective_state"],
        "draining"
    );
    let status = in_flight.await??.status;
    assert_eq!(
        status,
        http::StatusCode::OK,
        "the request in flight completed"
    );
    let reached: BTreeSet<String> = new_connections_reach(lb, 4).await?.into_iter().collect();
    assert_eq!(reached, BTreeSet::from(["b2".to_owned()]));
    drop(on_b1);
    draining.await?;
    balancer.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_health_checks_every_backend_is_assumed_up() -> TestResult {
    let Setup {
        backends: [_b1, b2],
        balancer,
        ..
    } = setup(NO_HEALTH).await?;
    b2.kill().await;
    // Checks would have taken it down by now.
    tokio::time::sleep(std::time::Duration::from_millis(2000)).await;
    let status = backend_status(&balancer, "b2").await;
    assert_eq!(status["health"], serde_json::Value::Null);
    assert_eq!(status["effective_state"], "active");
    assert!(!balancer.status().await.health_checks);
    balancer.shutdown().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_gue_mode_checks_go_to_the_health_address_not_the_gue_port() -> TestResult {
    let b1 = Backend::start("b1", "0001", 0)?;
    // The backend's GUE port: it receives, and answers no QUIC handshake.
    let gue_port = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let text = format!(
        "listen = [\"127.0.0.1:0\"]\nworkers = 1\nmode = \"gue\"\n\
         [gue]\nbind = \"127.0.0.1:0\"\nports = 1\n{}\
         [[backend]]\nname = \"b1\"\naddr = \"{}\"\nhealth_addr = \"{}\"\nserver_id = \"0001\"\n\
         {FAST_HEALTH}",
        qlb_testkit::fixtures::table(0),
        gue_port.local_addr()?,
        b1.addr
    );
    let file = quic::LbFile::new(&text)?;
    let balancer = file.start().await?;
    eventually(WAIT, "b1 up", || async {
        health_of(&balancer, "b1").await == Some(Health::Up)
    })
    .await?;
    let status = backend_status(&balancer, "b1").await;
    assert_eq!(status["health_addr"], b1.addr.to_string());
    assert_eq!(status["addr"], gue_port.local_addr()?.to_string());
    let whole = serde_json::to_value(balancer.status().await)?;
    assert_eq!(whole["mode"], "gue");
    assert_eq!(whole["gue"][0], balancer.gue_addrs()[0].to_string());

    b1.kill().await;
    eventually(WAIT, "b1 down", || async {
        health_of(&balancer, "b1").await == Some(Health::Down)
    })
    .await?;
    balancer.shutdown().await?;
    Ok(())
}
