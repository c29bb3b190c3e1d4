//! Restarting the load balancer does not break established QUIC connections: a quinn + h3
//! client downloads a large body from a qlb-server backend through the load balancer, which
//! is shut down mid-transfer and started again on the same port with no state carried over.
//! The download completes intact on the same connection and backend, and the restarted load
//! balancer routed every datagram of it by connection ID.

mod quic;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Buf;
use qlb_router::Route;
use qlb_testkit::{SendRequest, TestResult, eventually};
use quic::{NO_HEALTH, Setup, WAIT, setup};

/// The body downloaded.
const SIZE: u64 = 50_000_000;
/// The load balancer stops once this much has arrived.
const STOP_AT: u64 = 5_000_000;
/// How long it stays stopped.
const DOWNTIME: Duration = Duration::from_millis(500);
/// The longest the download may take (a debug build on a loaded 2-core machine).
const TRANSFER_LIMIT: Duration = Duration::from_secs(120);

/// Downloads `GET path` on `send`, counting octets into `progress`; returns the status and
/// whether every octet was zero (the built-in `/bytes/N` route sends zeros).
async fn download(
    mut send: SendRequest,
    path: String,
    progress: Arc<AtomicU64>,
) -> TestResult<(http::StatusCode, bool)> {
    let mut stream = send
        .send_request(http::Request::get(format!("https://localhost{path}")).body(())?)
        .await?;
    let _ = stream.finish().await;
    let status = stream.recv_response().await?.status();
    let mut zeros = true;
    while let Some(mut chunk) = stream.recv_data().await? {
        while chunk.has_remaining() {
            let part = chunk.chunk();
            zeros &= part.iter().all(|&octet| octet == 0);
            progress.fetch_add(part.len() as u64, Ordering::Relaxed);
            let len = part.len();
            chunk.advance(len);
        }
    }
    Ok((status, zeros))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_survives_a_load_balancer_restart_on_the_same_port() -> TestResult {
    let Setup::<2> {
        file,
        balancer: first,
        lb,
        ..
    } = setup(NO_HEALTH).await?;
    let mut client = quic::connect(lb).await?;
    let backend = client.backend().await?;

    let started = Instant::now();
    let progress = Arc::new(AtomicU64::new(0));
    let transfer = tokio::spawn(download(
        client.sender(),
        format!("/bytes/{SIZE}"),
        progress.clone(),
    ));
    eventually(WAIT, "the download under way", || async {
        progress.load(Ordering::Relaxed) >= STOP_AT || transfer.is_finished()
    })
    .await?;
    first.shutdown().await?;
    let stopped_at = progress.load(Ordering::Relaxed);
    assert!(
        stopped_at < SIZE,
        "the download was over before the load balancer stopped"
    );
    tokio::time::sleep(DOWNTIME).await;

    // Same port, fresh process state: no flows, no tables.
    let text = std::fs::read_to_string(&file.path)?;
    file.write(&text.replace("127.0.0.1:0", &lb.to_string()))?;
    let second = file.start().await?;
    assert_eq!(second.listen_addrs(), [lb]);

    let (status, zeros) = tokio::time::timeout(TRANSFER_LIMIT, transfer).await???;
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(
        progress.load(Ordering::Relaxed),
        SIZE,
        "every octet arrived"
    );
    assert!(zeros, "and intact");
    let whoami = client.whoami().await?;
    assert_eq!(whoami["name"], backend.as_str(), "the same backend");
    assert_eq!(
        whoami["requests_on_connection"], 3,
        "the same connection: /whoami, the download, /whoami"
    );

    let status = second.status().await;
    assert!(status.flows.created >= 1);
    assert!(status.routed[Route::Cid.as_str()] > 0);
    assert_eq!(
        status.routed[Route::Fallback.as_str()],
        0,
        "no datagram needed a new choice of backend"
    );
    eprintln!(
        "LB restart: {} MB in {:?}; stopped at {:.1} MB for {DOWNTIME:?}; {} datagrams \
         routed by CID after the restart",
        SIZE / 1_000_000,
        started.elapsed(),
        stopped_at as f64 / 1e6,
        status.routed[Route::Cid.as_str()]
    );
    second.shutdown().await?;
    Ok(())
}
