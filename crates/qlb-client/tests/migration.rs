//! Explicit connection migration (`Connection::add_path`, `Path::probe`, `Path::switch`,
//! `Path::close`) against real peers on loopback: qlb-server backends, directly and through
//! a relay whose paths can die. (Through the load balancer's data plane: crates/qlb/tests.)

mod support;

use std::future::{Future, poll_fn};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use http_body_util::BodyExt;
use qlb_client::MigrationError;
use qlb_testkit::{TestResult, eventually, within};
use support::migration::{
    PROBE, PlainServer, Relay, WAIT, backend_and_connection, connect, echo, new_path, peer_seen,
    probed_path, relayed_connection, released,
};
use support::{Backend, client, whoami};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_measures_the_round_trip() -> TestResult {
    let (_backend, connection) = backend_and_connection().await?;
    let path = new_path(&connection)?;
    let rtt = path.probe(PROBE).await?;
    assert!(rtt < PROBE, "{rtt:?}");
    // Still a candidate: it probes again, and the connection has not moved.
    path.probe(PROBE).await?;
    assert_ne!(connection.local_addr()?.port(), path.local_addr().port());
    assert_eq!(echo(&connection, "alive").await?, "alive");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_of_a_dead_path_times_out_and_releases_the_socket() -> TestResult {
    let (_backend, relay, connection) = relayed_connection().await?;
    let path = new_path(&connection)?;
    relay.block(path.local_addr());

    let timeout = Duration::from_millis(400);
    let err = within(WAIT, "the probe", path.probe(timeout))
        .await?
        .expect_err("must fail");
    assert!(
        matches!(err, MigrationError::ProbeTimedOut(t) if t == timeout),
        "{err}"
    );
    // Released at once: its port can be bound again.
    UdpSocket::bind(path.local_addr())?;
    let err = path.probe(PROBE).await.expect_err("must fail");
    assert!(matches!(err, MigrationError::PathClosed), "{err}");
    assert_eq!(echo(&connection, "alive").await?, "alive");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_mid_download_keeps_every_byte_and_the_server_sees_the_new_address() -> TestResult {
    const LEN: usize = 20_000_000;
    let (_backend, connection) = backend_and_connection().await?;
    let old = connection.local_addr()?;
    assert_eq!(peer_seen(&connection).await?.port(), old.port());

    let received = Arc::new(AtomicUsize::new(0));
    let response = connection
        .send(http::Request::get(format!("/bytes/{LEN}")).body(String::new())?)
        .await?;
    assert_eq!(response.status(), http::StatusCode::OK);
    let download = tokio::spawn({
        let received = received.clone();
        let mut body = response.into_body();
        async move {
            let mut nonzero = 0;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame?.into_data() {
                    nonzero += data.iter().filter(|&&octet| octet != 0).count();
                    received.fetch_add(data.len(), Ordering::Relaxed);
                }
            }
            TestResult::Ok(nonzero)
        }
    });
    within(WAIT, "the download to start", async {
        while received.load(Ordering::Relaxed) < LEN / 10 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await?;

    let path = probed_path(&connection).await?;
    path.switch().await?;
    assert!(
        received.load(Ordering::Relaxed) < LEN,
        "switched mid-download"
    );
    assert_eq!(connection.local_addr()?, path.local_addr());

    let nonzero = within(WAIT, "the download", download).await???;
    assert_eq!((received.load(Ordering::Relaxed), nonzero), (LEN, 0));
    assert_eq!(peer_seen(&connection).await?, path.local_addr());
    // The connection uses the path now: probing it reports the connection's RTT.
    path.probe(PROBE).await?;
    released(old).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_to_a_dead_path_rolls_back_and_the_connection_lives() -> TestResult {
    let (_backend, relay, connection) = relayed_connection().await?;
    let old = connection.local_addr()?;
    let path = probed_path(&connection).await?;
    // The path worked when probed, and dies before the switch.
    relay.block(path.local_addr());

    let err = within(WAIT, "the switch", path.switch())
        .await?
        .expect_err("must fail");
    assert!(
        matches!(err, MigrationError::SwitchNotConfirmed(window) if window >= Duration::from_millis(300)),
        "{err}"
    );
    assert_eq!(connection.local_addr()?, old);
    assert!(!connection.is_closed());
    assert_eq!(echo(&connection, "alive").await?, "alive");
    let err = path.switch().await.expect_err("must fail");
    assert!(matches!(err, MigrationError::PathClosed), "{err}");
    released(path.local_addr()).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_switch_rolls_back() -> TestResult {
    let (_backend, relay, connection) = relayed_connection().await?;
    let old = connection.local_addr()?;
    let path = probed_path(&connection).await?;
    relay.block(path.local_addr());
    // (A switch first waits for the handshake's confirmation, which may be on its way.)
    eventually(WAIT, "the handshake to be confirmed", || {
        connection.is_handshake_confirmed()
    })
    .await?;
    // Polled once, the switch has rebound the endpoint and waits for a confirmation the
    // dead path never gives; then it is dropped.
    let mut switch = Box::pin(path.switch());
    let first = poll_fn(|cx| Poll::Ready(switch.as_mut().poll(cx))).await;
    assert!(first.is_pending(), "{first:?}");
    assert_eq!(connection.local_addr()?, path.local_addr());
    drop(switch);
    assert_eq!(connection.local_addr()?, old);
    assert_eq!(echo(&connection, "alive").await?, "alive");
    let err = path.switch().await.expect_err("must fail");
    assert!(matches!(err, MigrationError::PathClosed), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_switches_under_load_lose_no_request() -> TestResult {
    const SWITCHES: usize = 100;
    const WORKERS: usize = 4;
    let (_backend, connection) = backend_and_connection().await?;
    let completed = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (connection, completed, done) =
                (connection.clone(), completed.clone(), done.clone());
            tokio::spawn(async move {
                // 20 kB up and back: data flows both ways while the connection moves.
                let message = "0123456789".repeat(2_000);
                while !done.load(Ordering::Relaxed) {
                    let body = echo(&connection, message.clone()).await?;
                    if body != message {
                        return Err(format!(
                            "echo of {} octets came back as {}",
                            message.len(),
                            body.len()
                        )
                        .into());
                    }
                    completed.fetch_add(1, Ordering::Relaxed);
                }
                TestResult::Ok(())
            })
        })
        .collect();

    let mut last = None;
    let switches = within(WAIT, "100 switches", async {
        for _ in 0..SWITCHES {
            let before = completed.load(Ordering::Relaxed);
            let path = probed_path(&connection).await?;
            path.switch().await?;
            last = Some(path.local_addr());
            // Requests keep flowing between switches: at least one more completes.
            while completed.load(Ordering::Relaxed) == before {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        TestResult::Ok(())
    })
    .await;
    done.store(true, Ordering::Relaxed);
    switches??;
    for worker in workers {
        within(WAIT, "a worker", worker).await???;
    }
    assert!(completed.load(Ordering::Relaxed) >= SWITCHES);
    let last = last.ok_or("no switch")?;
    assert_eq!(connection.local_addr()?, last);
    assert_eq!(peer_seen(&connection).await?, last);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_switches_run_one_after_the_other() -> TestResult {
    let (_backend, connection) = backend_and_connection().await?;
    let (a, b) = (
        probed_path(&connection).await?,
        probed_path(&connection).await?,
    );
    let (switched_a, switched_b) = within(WAIT, "both switches", async {
        tokio::join!(a.switch(), b.switch())
    })
    .await?;
    switched_a?;
    switched_b?;
    // The second switch moved the connection away from the first path, which closed.
    let now = connection.local_addr()?;
    let previous = if now == a.local_addr() { &b } else { &a };
    let err = previous.switch().await.expect_err("must fail");
    assert!(matches!(err, MigrationError::PathClosed), "{err}");
    assert_eq!(peer_seen(&connection).await?, now);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misuse_gets_clear_errors() -> TestResult {
    let (_backend, connection) = backend_and_connection().await?;

    let path = new_path(&connection)?;
    let err = path.switch().await.expect_err("must fail");
    assert!(matches!(err, MigrationError::NotProbed), "{err}");
    let local = path.local_addr();
    path.close();
    UdpSocket::bind(local)?;

    // The connection goes: its paths say so.
    let path = probed_path(&connection).await?;
    // The last handle of an unpooled connection closes it.
    drop(connection);
    for err in [
        path.probe(PROBE).await.expect_err("must fail"),
        path.switch().await.expect_err("must fail"),
    ] {
        assert!(matches!(err, MigrationError::ConnectionClosed(_)), "{err}");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_of_a_closing_connection_are_refused() -> TestResult {
    let (backend, connection) = backend_and_connection().await?;
    let path = probed_path(&connection).await?;
    backend.server.shutdown(Duration::from_millis(200)).await;
    within(WAIT, "the connection to close", connection.closed()).await?;
    let err = path.switch().await.expect_err("must fail");
    assert!(matches!(err, MigrationError::ConnectionClosed(_)), "{err}");
    let err = connection
        .add_path(UdpSocket::bind("127.0.0.1:0")?)
        .expect_err("must fail");
    assert!(matches!(err, MigrationError::ConnectionClosed(_)), "{err}");
    Ok(())
}

/// The peer's `disable_active_migration` cannot be read through quinn 0.11 (see the
/// `migration` module documentation): the switch is tried, the quinn peer drops the packets
/// from the new address, and the switch rolls back with the connection alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_disabled_migration_keeps_the_connection_where_it_was() -> TestResult {
    let server = PlainServer::start(false)?;
    let connection = connect(server.addr, &server.certificate).await?;
    let old = connection.local_addr()?;
    assert_eq!(echo(&connection, "alive").await?, "alive");

    let path = new_path(&connection)?;
    // Version negotiation is the endpoint's business, not the connection's: the probe works.
    path.probe(PROBE).await?;
    let err = within(WAIT, "the switch", path.switch())
        .await?
        .expect_err("must fail");
    assert!(
        matches!(err, MigrationError::SwitchNotConfirmed(_)),
        "{err}"
    );
    assert_eq!(connection.local_addr()?, old);
    assert_eq!(echo(&connection, "alive").await?, "alive");

    // The same server with migration allowed follows the switch.
    let server = PlainServer::start(true)?;
    let connection = connect(server.addr, &server.certificate).await?;
    probed_path(&connection).await?.switch().await?;
    assert_eq!(echo(&connection, "alive").await?, "alive");
    Ok(())
}

/// A resumed connection carries early data before its handshake is confirmed, but it must
/// not move until then (RFC 9000 section 9): the server would drop everything from the new
/// address, the handshake would never finish and the early requests would hang. While the
/// server's replies are held back, a switch waits and then refuses, leaving the connection
/// where it was; once they pass, the early request is answered and the same path switches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_moves_only_once_its_handshake_is_confirmed() -> TestResult {
    let backend = Backend::start_with("b1", "0001", "127.0.0.1:0".parse()?, |builder| {
        builder.cluster_secret(b"the cluster's secret")
    })?;
    let relay = Relay::start(backend.addr).await?;
    // Idle connections close after 200 ms: the next request opens a new one, resuming.
    let client = client(relay.addr)
        .idle_timeout(Duration::from_millis(200))
        .zero_rtt(true)
        .build()?;
    assert_eq!(whoami(&client).await?, "b1");
    tokio::time::sleep(Duration::from_millis(400)).await;

    relay.hold_new_clients();
    let early = tokio::spawn({
        let client = client.clone();
        async move { whoami(&client).await.map_err(|err| err.to_string()) }
    });
    let mut resuming = None;
    eventually(WAIT, "a resumed connection sending early data", || {
        resuming = client
            .connections()
            .into_iter()
            .find(|c| !c.is_closed() && !c.is_handshake_confirmed());
        resuming.is_some()
    })
    .await?;
    let connection = resuming.ok_or("a resuming connection")?;
    let before = connection.local_addr()?;
    // The new path's probe must pass; the connection's own replies stay held (it is bound
    // to the unspecified address and reaches the relay from loopback).
    relay.hold_only(SocketAddr::from((Ipv4Addr::LOCALHOST, before.port())));
    let path = probed_path(&connection).await?;
    let err = path
        .switch()
        .await
        .expect_err("must wait for the handshake");
    assert!(
        matches!(err, MigrationError::HandshakeNotConfirmed),
        "{err}"
    );
    assert_eq!(connection.local_addr()?, before);
    assert!(
        !early.is_finished(),
        "the early request was answered while held"
    );

    relay.release();
    let answered = within(WAIT, "the early request", early).await??;
    assert_eq!(answered.as_deref(), Ok("b1"));
    eventually(WAIT, "the handshake to be confirmed", || {
        connection.is_handshake_confirmed()
    })
    .await?;
    let seen_before = peer_seen(&connection).await?;
    path.switch().await?;
    assert_eq!(connection.local_addr()?, path.local_addr());
    // The relay gives each client address an upstream socket of its own.
    assert_ne!(peer_seen(&connection).await?, seen_before);
    Ok(())
}
