//! The client against real qlb-server backends on loopback: requests and their numbers,
//! streaming bodies both ways, timeouts, connection errors, the unpooled `Connection`.

mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use qlb_client::{BackendList, Client, Connection, Error, RequestTimeout, ServedBy, Trust};
use qlb_testkit::{TestResult, eventually, within};
use support::{Backend, SOON, client, fetch, whoami};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_served_and_counted() -> TestResult {
    let backend = Backend::start("solo", "0001")?;
    let client = client(backend.addr).build()?;
    for _ in 0..5 {
        assert_eq!(whoami(&client).await?, "solo");
    }
    let response = client
        .send(http::Request::get("/healthz").body(String::new())?)
        .await?;
    let served = response
        .extensions()
        .get::<ServedBy>()
        .copied()
        .ok_or("ServedBy")?;
    assert_eq!(served.backend, backend.addr);
    drop(response);

    let snapshot = client.snapshot();
    let numbers = snapshot.backend(backend.addr).ok_or("the backend")?;
    assert_eq!((numbers.requests, numbers.errors), (6, 0));
    assert_eq!(numbers.in_flight, 0);
    assert_eq!(
        (numbers.connections_opened, numbers.connections_open),
        (1, 1)
    );
    assert_eq!(numbers.connections_closed.total(), 0);
    assert!(numbers.latency.is_some());
    assert_eq!(snapshot.retries, 0);
    assert_eq!(client.connections().len(), 1);
    assert_eq!(client.connections()[0].id(), served.connection);

    let mut registry = prometheus_client::registry::Registry::default();
    client.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)?;
    let label = format!("backend=\"{}\"", backend.addr);
    for line in [
        format!("qlb_client_requests_total{{{label}}} 6"),
        format!("qlb_client_errors_total{{{label}}} 0"),
        format!("qlb_client_in_flight{{{label}}} 0"),
        format!("qlb_client_connections_opened_total{{{label}}} 1"),
        format!("qlb_client_connections_open{{{label}}} 1"),
        format!("qlb_client_backend_healthy{{{label}}} 1"),
        format!("qlb_client_connection_closes_total{{{label},reason=\"goaway\"}} 0"),
        "qlb_client_retries_total 0".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways() -> TestResult {
    let backend = Backend::start("echo", "0002")?;
    let client = client(backend.addr).build()?;

    // Duplex: each chunk comes back before the next one is sent.
    let (mut upload, body) = http_body_util::channel::Channel::<Bytes>::new(1);
    let response = client
        .send(http::Request::post("/echo").body(body)?)
        .await?;
    assert_eq!(response.status(), 200);
    let mut download = response.into_body();
    for chunk in ["first ", "second ", "third"] {
        upload.send_data(Bytes::from(chunk)).await?;
        let mut echoed = Vec::new();
        while echoed.len() < chunk.len() {
            let frame = within(SOON, "echo", download.frame())
                .await?
                .ok_or("ended")??;
            echoed.extend_from_slice(&frame.into_data().map_err(|_| "not data")?);
        }
        assert_eq!(echoed, chunk.as_bytes());
    }
    drop(upload);
    assert!(within(SOON, "end", download.frame()).await?.is_none());

    // A large download arrives whole.
    let (status, body) = fetch(&client, "/bytes/3000000").await?;
    assert_eq!((status, body.len()), (http::StatusCode::OK, 3_000_000));
    assert!(body.iter().all(|&b| b == 0));
    eventually(SOON, "nothing in flight", || {
        client.snapshot().backends[0].in_flight == 0
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_takes_too_long_times_out() -> TestResult {
    let backend = Backend::start("slow", "0003")?;
    let client = client(backend.addr).build()?;
    whoami(&client).await?; // connected

    let mut request = http::Request::get("/delay/5000").body(String::new())?;
    request
        .extensions_mut()
        .insert(RequestTimeout(Duration::from_millis(300)));
    let started = Instant::now();
    let err = client.send(request).await.expect_err("timed out");
    assert!(
        matches!(err, Error::Timeout(timeout) if timeout == Duration::from_millis(300)),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(4));

    // The client-wide timeout covers the body too: the head comes at once, the body never.
    let short = support::client(backend.addr)
        .timeout(Duration::from_millis(300))
        .build()?;
    let (mut upload, body) = http_body_util::channel::Channel::<Bytes>::new(1);
    upload.send_data(Bytes::from_static(b"x")).await?;
    let response = short.send(http::Request::post("/echo").body(body)?).await?;
    let err = within(SOON, "body", response.into_body().collect())
        .await?
        .expect_err("timed out");
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    drop(upload);

    for client in [&client, &short] {
        let numbers = client.snapshot().backends[0].clone();
        assert_eq!(numbers.errors, 1, "{numbers:?}");
        assert_eq!(numbers.in_flight, 0, "{numbers:?}");
    }
    // The connection is still good.
    assert_eq!(whoami(&client).await?, "slow");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_server_is_a_connection_error_after_one_retry() -> TestResult {
    // A port that was free a moment ago: nothing answers there.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?;
    let client = client(silent)
        .connect_timeout(Duration::from_millis(300))
        .build()?;
    let err = whoami(&client).await.expect_err("nobody there");
    let err = err.downcast_ref::<Error>().ok_or("a client error")?;
    assert!(
        matches!(err, Error::Connect { addr, .. } if *addr == silent),
        "{err}"
    );
    assert!(err.is_unprocessed());
    let snapshot = client.snapshot();
    assert_eq!(snapshot.retries, 1);
    let numbers = snapshot.backend(silent).ok_or("the backend")?;
    assert_eq!((numbers.requests, numbers.errors), (2, 2));
    assert!(
        numbers.connect_failures >= 2 && numbers.failing,
        "{numbers:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_checked_before_anything_is_sent() -> TestResult {
    let backend = Backend::start("strict", "0004")?;
    let client = client(backend.addr).build()?;
    let plain = http::Request::get("http://localhost/whoami").body(String::new())?;
    assert!(matches!(
        client.send(plain).await,
        Err(Error::InvalidRequest(_))
    ));
    let empty = Client::builder(BackendList::new([]).into(), Trust::Insecure).build()?;
    let err = empty
        .send(http::Request::get("/").body(String::new())?)
        .await
        .expect_err("none");
    assert!(matches!(err, Error::NoBackends(_)), "{err}");
    assert_eq!(client.snapshot().requests(), 0);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_connection_serves_until_goaway() -> TestResult {
    let backend = Backend::start("alone", "0005")?;
    let connection = Connection::connect(backend.addr, "localhost", &Trust::Insecure).await?;
    assert_eq!(connection.remote_addr(), backend.addr);
    assert_ne!(connection.local_addr()?.port(), 0);
    let response = connection
        .send(http::Request::get("/whoami").body(String::new())?)
        .await?;
    let whoami = response.into_body().collect().await?.to_bytes();
    assert!(String::from_utf8_lossy(&whoami).contains("alone"));
    assert_eq!(connection.in_flight(), 0);

    let shutdown = tokio::spawn({
        let server = backend.server.clone();
        async move { server.shutdown(Duration::from_secs(5)).await }
    });
    eventually(SOON, "GOAWAY seen", || connection.is_draining()).await?;
    let err = connection
        .send(http::Request::get("/whoami").body(String::new())?)
        .await
        .expect_err("going away");
    assert!(matches!(err, Error::GoingAway), "{err}");
    within(SOON, "close", connection.closed()).await?;
    assert!(connection.is_closed());
    shutdown.await?;
    Ok(())
}
