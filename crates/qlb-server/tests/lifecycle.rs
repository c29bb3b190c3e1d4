//! The graceful lifecycle over real connections: shutdown (two-phase GOAWAY, in-flight
//! requests finish, late ones are rejected, new connections refused, close with
//! H3_NO_ERROR), the shutdown deadline, max connection age with and without grace, max idle.

mod support;

use std::time::{Duration, Instant};

use http::StatusCode;
use qlb_testkit::{closed_with, within};
use support::hold::start_with_hold;
use support::{TestResult, builder, start_builtin};

const H3_NO_ERROR: u32 = 0x100;
const H3_REQUEST_REJECTED: u64 = 0x10b;
/// Slack for scheduling on a loaded 2-core machine; lifecycle bounds are checked, not speed.
const SLACK: Duration = Duration::from_millis(1500);

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_rejects_late_ones_and_refuses_new_connections()
-> TestResult {
    let (mut running, mut hold) = start_with_hold(builder("0b01"))?;
    let client = running.connect().await?;
    let in_flight = client.spawn_get("/hold");
    hold.started().await?;

    let shutdown_started = Instant::now();
    let shutdown = running.shutdown_in_background(Duration::from_secs(20));
    running.final_goaways_sent(1.0).await?;
    running
        .expect_metric("qlb_server_goaways_sent_total{kind=\"initial\"}", 1.0)
        .await?;

    // A new connection is refused.
    let refused = running
        .connect()
        .await
        .err()
        .ok_or("a new connection was accepted")?;
    let refused = refused
        .downcast_ref::<quinn::ConnectionError>()
        .ok_or("not a QUIC error")?;
    assert!(
        matches!(refused, quinn::ConnectionError::ConnectionClosed(close)
            if close.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED),
        "{refused}"
    );

    // A request on a stream after the final GOAWAY is reset with H3_REQUEST_REJECTED
    // (h3's client would not send one; a raw stream stands for a client that ignores GOAWAY).
    let (mut send, mut recv) = client.quic.open_bi().await?;
    send.write_all(&[0x01, 0x00]).await?;
    match recv.read_to_end(64).await {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(code))) => {
            assert_eq!(code.into_inner(), H3_REQUEST_REJECTED)
        }
        other => return Err(format!("late request: {other:?}").into()),
    }

    // The request in flight completes, and saw the drain.
    hold.release();
    let held = in_flight.await??;
    assert_eq!(
        (held.status, &held.body[..]),
        (StatusCode::OK, &b"draining"[..])
    );

    // Then the connection closes with H3_NO_ERROR and the shutdown returns, before its deadline.
    let closed = client.closed().await;
    assert!(closed_with(&closed, H3_NO_ERROR), "{closed}");
    within(Duration::from_secs(5), "shutdown", async {
        let _ = shutdown.await;
    })
    .await?;
    assert!(shutdown_started.elapsed() < Duration::from_secs(10));
    within(Duration::from_secs(5), "serve", async {
        let _ = (&mut running.serving).await;
    })
    .await?;
    for (series, value) in [
        (
            "qlb_server_connection_closes_total{reason=\"shutdown\"}",
            1.0,
        ),
        ("qlb_server_connections_refused_total", 1.0),
        ("qlb_server_requests_rejected_total", 1.0),
        ("qlb_server_active_connections", 0.0),
    ] {
        running.expect_metric(series, value).await?;
    }
    Ok(())
}

/// On the wire: the first GOAWAY carries 2^62-4 (every request still admitted), the second
/// the first request stream the server will not process (RFC 9114 section 5.2): here 4,
/// after the one request on stream 0.
#[tokio::test]
async fn shutdown_sends_goaway_with_the_maximum_id_then_the_first_unprocessed_one() -> TestResult {
    let (running, mut hold) = start_with_hold(builder("0b07"))?;
    let raw = support::raw_h3::RawH3::connect(running.addr, &running.certificate).await?;
    let (_send, mut recv) = raw.get("/hold").await?;
    hold.started().await?;
    let shutdown = running.shutdown_in_background(Duration::from_secs(20));
    let ids = tokio::time::timeout(Duration::from_secs(5), raw.goaways(2)).await??;
    assert_eq!(ids, [(1 << 62) - 4, 4]);
    hold.release();
    let response = tokio::time::timeout(Duration::from_secs(5), recv.read_to_end(1024)).await??;
    assert!(!response.is_empty());
    assert!(closed_with(&raw.quic.closed().await, H3_NO_ERROR));
    shutdown.await?;
    Ok(())
}

#[tokio::test]
async fn the_shutdown_deadline_closes_connections_with_requests_still_running() -> TestResult {
    let (running, mut hold) = start_with_hold(builder("0b02"))?;
    let mut client = running.connect().await?;
    let in_flight = client.spawn_get("/hold");
    hold.started().await?;
    let started = Instant::now();
    running.server.shutdown(Duration::from_millis(300)).await;
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(300),
        "returned after {took:?}"
    );
    assert!(
        took < Duration::from_millis(300) + SLACK,
        "returned after {took:?}"
    );
    assert!(closed_with(&client.closed().await, H3_NO_ERROR));
    assert!(in_flight.await?.is_err(), "the held request was answered");
    assert!(client.get("/whoami").await.is_err());
    running
        .expect_metric(
            "qlb_server_connection_closes_total{reason=\"shutdown_deadline\"}",
            1.0,
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn max_age_drains_a_connection_at_its_jittered_age() -> TestResult {
    let age = Duration::from_millis(400);
    let running = start_builtin(builder("0b03").max_connection_age(age))?;
    let mut client = running.connect().await?;
    let connected = Instant::now();
    assert_eq!(client.get("/whoami").await?.status, StatusCode::OK);
    let closed = client.closed().await;
    let lived = connected.elapsed();
    assert!(closed_with(&closed, H3_NO_ERROR), "{closed}");
    assert!(
        lived >= age.mul_f64(0.9) - Duration::from_millis(20),
        "closed after {lived:?}"
    );
    assert!(lived <= age.mul_f64(1.1) + SLACK, "closed after {lived:?}");
    running
        .expect_metric(
            "qlb_server_connection_closes_total{reason=\"max_age\"}",
            1.0,
        )
        .await?;
    running
        .expect_metric("qlb_server_goaways_sent_total{kind=\"initial\"}", 1.0)
        .await?;
    running
        .expect_metric("qlb_server_goaways_sent_total{kind=\"final\"}", 1.0)
        .await?;
    Ok(())
}

#[tokio::test]
async fn max_age_grace_cuts_requests_that_outlive_it() -> TestResult {
    let (age, grace) = (Duration::from_millis(300), Duration::from_millis(300));
    let (running, mut hold) = start_with_hold(
        builder("0b04")
            .max_connection_age(age)
            .max_connection_age_grace(grace),
    )?;
    let client = running.connect().await?;
    let connected = Instant::now();
    let in_flight = client.spawn_get("/hold");
    hold.started().await?;
    let closed = client.closed().await;
    let lived = connected.elapsed();
    assert!(closed_with(&closed, H3_NO_ERROR), "{closed}");
    assert!(
        lived >= age.mul_f64(0.9) + grace - Duration::from_millis(20),
        "closed after {lived:?}"
    );
    assert!(
        lived <= age.mul_f64(1.1) + grace + SLACK,
        "closed after {lived:?}"
    );
    assert!(in_flight.await?.is_err(), "the held request was answered");
    running
        .expect_metric(
            "qlb_server_connection_closes_total{reason=\"max_age_grace\"}",
            1.0,
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn requests_that_finish_within_the_grace_complete() -> TestResult {
    let running = start_builtin(
        builder("0b05")
            .max_connection_age(Duration::from_millis(200))
            .max_connection_age_grace(Duration::from_secs(20)),
    )?;
    let mut client = running.connect().await?;
    let delayed = client.get("/delay/700").await?;
    assert_eq!(delayed.status, StatusCode::OK);
    let closed = client.closed().await;
    assert!(closed_with(&closed, H3_NO_ERROR), "{closed}");
    running
        .expect_metric(
            "qlb_server_connection_closes_total{reason=\"max_age\"}",
            1.0,
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn max_idle_drains_a_quiet_connection() -> TestResult {
    let idle = Duration::from_millis(300);
    let running = start_builtin(builder("0b06").max_connection_idle(idle))?;
    let mut client = running.connect().await?;
    assert_eq!(client.get("/delay/400").await?.status, StatusCode::OK);
    let quiet_since = Instant::now();
    let closed = client.closed().await;
    let quiet = quiet_since.elapsed();
    assert!(closed_with(&closed, H3_NO_ERROR), "{closed}");
    assert!(
        quiet >= idle - Duration::from_millis(20),
        "closed after {quiet:?} idle"
    );
    assert!(quiet <= idle + SLACK, "closed after {quiet:?} idle");
    running
        .expect_metric(
            "qlb_server_connection_closes_total{reason=\"max_idle\"}",
            1.0,
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn limits_too_long_for_a_deadline_are_refused_naming_the_setting() -> TestResult {
    let absurd = Duration::from_secs(u64::MAX);
    for (builder, setting) in [
        (
            builder("0b07").max_connection_age(absurd),
            "max_connection_age",
        ),
        (
            builder("0b07").max_connection_age_grace(absurd),
            "max_connection_age_grace",
        ),
        (
            builder("0b07").max_connection_idle(Duration::from_secs(86_401)),
            "max_connection_idle",
        ),
    ] {
        let refused = builder
            .bind("127.0.0.1:0".parse()?)
            .err()
            .ok_or(format!("{setting}: accepted"))?;
        assert!(
            refused.to_string().starts_with(&format!("{setting}: ")),
            "{refused}"
        );
    }
    // The maxima themselves are fine.
    let year = Duration::from_secs(365 * 24 * 3600);
    builder("0b07")
        .max_connection_age(year)
        .max_connection_age_grace(year)
        .max_connection_idle(Duration::from_secs(86_400))
        .bind("127.0.0.1:0".parse()?)?;
    Ok(())
}
