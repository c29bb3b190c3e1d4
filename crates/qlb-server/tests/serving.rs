//! Handlers: an axum Router and a plain tower service run unchanged, bodies stream both
//! ways, each request sees its connection (server, peer, ordinal), migrations show.

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::routing::{get, post};
use axum::{Extension, Router};
use bytes::{Buf, Bytes};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use qlb_server::{ConnectionInfo, RequestBody, builtin_routes};
use support::{TestResult, builder, start, start_builtin};
use tokio::sync::mpsc;

#[tokio::test]
async fn an_axum_router_serves_whoami_uploads_and_downloads() -> TestResult {
    let running = start(builder("0a01").name("alpha"), |server| {
        Router::new()
            .route(
                "/upload",
                post(|body: Body| async move {
                    let mut frames = 0;
                    let mut octets = 0;
                    let mut body = body;
                    while let Some(frame) = body.frame().await {
                        if let Ok(data) = frame.map_err(|_| ())?.into_data() {
                            frames += 1;
                            octets += data.len();
                        }
                    }
                    Ok::<_, ()>(format!("{octets} {frames}"))
                }),
            )
            .route(
                "/ordinal",
                get(|Extension(info): Extension<ConnectionInfo>| async move {
                    info.request_ordinal.to_string()
                }),
            )
            .merge(builtin_routes(server.drain_state()))
    })?;
    let mut client = running.connect().await?;

    for ordinal in 1..=3 {
        let whoami = client.get("/whoami").await?;
        assert_eq!(whoami.status, StatusCode::OK);
        let json = whoami.json()?;
        assert_eq!(json["server_id"], "0a01");
        assert_eq!(json["name"], "alpha");
        assert_eq!(json["peer"], client.endpoint.local_addr()?.to_string());
        assert_eq!(json["requests_on_connection"], 2 * ordinal - 1);
        assert!(json["connection_age_ms"].is_u64());
        assert_eq!(
            client.get("/ordinal").await?.body,
            (2 * ordinal).to_string()
        );
    }

    let chunks: Vec<Bytes> = (0..64u8).map(|i| Bytes::from(vec![i; 16 * 1024])).collect();
    let upload = client.request("POST", "/upload", chunks).await?;
    let reply = String::from_utf8(upload.body.to_vec())?;
    let (octets, frames) = reply.split_once(' ').ok_or("reply")?;
    assert_eq!(octets, (64 * 16 * 1024).to_string());
    assert!(
        frames.parse::<u32>()? > 1,
        "the body arrived in {frames} frame(s)"
    );

    let payload: Bytes = (0..300_000u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    let echo = client
        .request("POST", "/echo", vec![payload.clone()])
        .await?;
    assert_eq!(echo.body, payload);

    let download = client.get("/bytes/3000000").await?;
    assert_eq!(download.body.len(), 3_000_000);
    assert_eq!(client.get("/nope").await?.status, StatusCode::NOT_FOUND);
    running
        .expect_metric("qlb_server_requests_total{status=\"200\"}", 9.0)
        .await?;
    running
        .expect_metric("qlb_server_requests_total{status=\"404\"}", 1.0)
        .await?;
    Ok(())
}

/// A response body fed chunk by chunk from a channel.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|chunk| Ok(http_body::Frame::data(chunk))))
    }
}

/// The handler answers each request chunk with its upper-case copy while the request is
/// still open; the client sees each answer before it sends the next chunk. Neither body is
/// buffered whole.
#[tokio::test]
async fn bodies_stream_both_ways() -> TestResult {
    let app = Router::new().route(
        "/shout",
        post(|body: Body| async move {
            let (sender, receiver) = mpsc::channel(1);
            tokio::spawn(async move {
                let mut body = body;
                while let Some(Ok(frame)) = body.frame().await {
                    if let Ok(data) = frame.into_data() {
                        if sender.send(data.to_ascii_uppercase().into()).await.is_err() {
                            return;
                        }
                    }
                }
            });
            Body::new(ChannelBody(receiver))
        }),
    );
    let running = start(builder("0a02"), |_| app)?;
    let client = running.connect().await?;
    let mut send = client.sender();
    let request = Request::post("https://localhost/shout").body(())?;
    let mut stream = send.send_request(request).await?;
    stream.send_data(Bytes::from_static(b"first")).await?;
    let response = stream.recv_response().await?;
    assert_eq!(response.status(), StatusCode::OK);
    for (sent, expected) in [(&b"second"[..], &b"FIRST"[..]), (b"third", b"SECOND")] {
        let mut chunk = stream.recv_data().await?.ok_or("body ended early")?;
        assert_eq!(chunk.copy_to_bytes(chunk.remaining()), expected);
        stream.send_data(Bytes::from_static(sent)).await?;
    }
    stream.finish().await?;
    let mut chunk = stream.recv_data().await?.ok_or("body ended early")?;
    assert_eq!(chunk.copy_to_bytes(chunk.remaining()), &b"THIRD"[..]);
    assert!(stream.recv_data().await?.is_none());
    Ok(())
}

#[tokio::test]
async fn a_plain_tower_service_works_and_its_errors_become_500() -> TestResult {
    let service = tower::service_fn(|request: Request<RequestBody>| async move {
        match request.uri().path() {
            "/fail" => Err(std::io::Error::other("handler failure")),
            _ => Ok(Response::new(Full::new(Bytes::from_static(b"fine")))),
        }
    });
    let running = start(builder("0a03"), |_| service)?;
    let mut client = running.connect().await?;
    let ok = client.get("/").await?;
    assert_eq!((ok.status, &ok.body[..]), (StatusCode::OK, &b"fine"[..]));
    assert_eq!(
        client.get("/fail").await?.status,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // The connection survives a failed handler.
    assert_eq!(client.get("/").await?.status, StatusCode::OK);
    running
        .expect_metric("qlb_server_requests_total{status=\"500\"}", 1.0)
        .await?;
    Ok(())
}

/// The client moves to a new port mid-connection (as a NAT rebinding would): the server
/// follows, `/whoami` reports the new address, the metric counts it.
#[tokio::test]
async fn a_migrated_client_keeps_its_connection_and_shows_its_new_address() -> TestResult {
    let running = start_builtin(builder("0a04"))?;
    let mut client = running.connect().await?;
    let before = client.get("/whoami").await?.json()?;
    assert_eq!(before["peer"], client.endpoint.local_addr()?.to_string());
    client.rebind()?;
    let after = client.get("/whoami").await?.json()?;
    assert_ne!(after["peer"], before["peer"]);
    assert_eq!(after["peer"], client.endpoint.local_addr()?.to_string());
    assert_eq!(after["requests_on_connection"], 2);
    assert_eq!(running.metric("qlb_server_peer_address_changes_total"), 1.0);
    assert_eq!(running.metric("qlb_server_active_connections"), 1.0);
    Ok(())
}

/// `nonces_remaining` counts down from the nonce space (6 octets: 2^48) as CIDs are issued,
/// so operators can alert before the server falls back to unroutable failover CIDs.
#[tokio::test]
async fn the_nonces_remaining_gauge_counts_down_as_cids_are_issued() -> TestResult {
    let space = 2f64.powi(48);
    let running = start_builtin(builder("0a05"))?;
    assert_eq!(running.metric("qlb_server_nonces_remaining"), space);
    let mut client = running.connect().await?;
    assert_eq!(client.get("/whoami").await?.status, StatusCode::OK);
    let issued = running.metric("qlb_server_cids_issued_total");
    assert!(issued >= 1.0, "{issued} CIDs issued");
    assert_eq!(
        running.metric("qlb_server_nonces_remaining"),
        space - issued
    );
    Ok(())
}

/// A handler that answers without reading the request to its end (a GET whose client has not
/// finished its stream yet) asks the client to stop sending with H3_NO_ERROR, as RFC 9114
/// section 4.1.1 wants, not with quinn's default code 0, which clients take for an error.
#[tokio::test]
async fn an_unread_request_is_stopped_with_h3_no_error() -> TestResult {
    let running = start_builtin(builder("0a07"))?;
    let client = running.connect().await?;
    let mut send = client.sender();
    let request = http::Request::get("https://localhost/whoami").body(())?;
    let mut stream = send.send_request(request).await?;
    let response = stream.recv_response().await?;
    assert_eq!(response.status(), http::StatusCode::OK);
    while stream.recv_data().await?.is_some() {}
    // The server's STOP_SENDING has arrived by the time the response has ended.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let finished = stream.finish().await;
    match finished {
        Ok(()) => {}
        Err(err) => {
            let text = format!("{err:?}");
            assert!(
                text.contains("256") || text.contains("H3_NO_ERROR"),
                "{text}"
            );
        }
    }
    Ok(())
}
