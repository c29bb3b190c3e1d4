//! The load balancer is SIGKILLed and restarted on the same port in the middle of a 50 MB
//! download through it: the download completes intact, from the one backend that had the
//! connection, because the restarted load balancer routes the client's next datagrams by
//! connection ID without any state carried over.
//!
//! The client (aioquic) sends a keep-alive PING every second, and it must: in proxy mode the
//! backend's datagrams go to the dead load balancer's per-flow socket, and only a datagram
//! from the client opens the new flow the backend can answer through. A client that only
//! receives sends nothing once nothing arrives (it acknowledges data; it does not probe), so
//! without a keep-alive its download stalls until its idle timeout. ngtcp2's gtlsclient, which
//! has no keep-alive, shows it: a download stalls every time, and an upload echoed back
//! stalls whenever the upload is blocked by flow control at the moment of the kill.

mod support;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use qlb_testkit::peers::aioquic_available;
use support::TestResult;
use support::cluster::{Cluster, Spec};
use support::peers::Download;

/// The download.
const SIZE: u64 = 50_000_000;

/// The load balancer dies once this much has arrived.
const KILL_AT: u64 = 5_000_000;

/// How long the load balancer stays dead: several of the client's probe timeouts.
const DOWNTIME: Duration = Duration::from_millis(500);

/// The client's keep-alive interval.
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// The longest the download may take (a debug build on a loaded 2-core machine).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn a_download_survives_the_load_balancer_being_killed_and_restarted() -> TestResult {
    if !aioquic_available() {
        return Ok(());
    }
    let mut cluster = Cluster::start(Spec::default())?;
    let started = Instant::now();
    let mut download = Download::start(
        cluster.lbs[0].addr,
        &format!("/bytes/{SIZE}"),
        cluster.dir(),
        KEEP_ALIVE,
    )?;
    let deadline = started + CLIENT_TIMEOUT;
    while download.arrived() < KILL_AT && download.running()? && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let lb = &mut cluster.lbs[0];
    lb.kill();
    let at_kill = download.arrived();
    let killed = Instant::now();
    assert!(
        (KILL_AT..SIZE).contains(&at_kill) && download.running()?,
        "the load balancer was not killed mid-download ({at_kill} octets had arrived)"
    );
    std::thread::sleep(DOWNTIME);
    lb.restart()?;
    let downtime = killed.elapsed();

    let downloaded = download.finish(deadline.saturating_duration_since(Instant::now()))?;
    assert_eq!(downloaded.status, 200);
    assert_eq!(downloaded.length, SIZE, "download incomplete");
    assert_eq!(
        zeros(download.body())?,
        SIZE,
        "download incomplete or corrupt"
    );

    let served = cluster.sole_server()?;
    // The restarted load balancer relays through a new upstream socket: the backend sees
    // its client's address change.
    let moves = served.client_address_changes()?;
    eprintln!(
        "LB restart: {} MB downloaded in {:?}; the LB was killed at {:.1} MB and answered \
         again {downtime:?} later; the longest pause in the download was {:?} (keep-alive \
         every {KEEP_ALIVE:?}); served by {} alone, which saw the client's address change \
         {moves} time(s)",
        SIZE / 1_000_000,
        downloaded.elapsed,
        at_kill as f64 / 1e6,
        downloaded.longest_pause,
        served.name,
    );
    Ok(())
}

/// How many octets of the file are zero (all of them, for what `/bytes/N` sends).
fn zeros(path: &Path) -> TestResult<u64> {
    let mut file = File::open(path)?;
    let mut buffer = vec![0; 1 << 20];
    let mut zeros = 0;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(zeros);
        }
        zeros += buffer[..read].iter().filter(|&&b| b == 0).count() as u64;
    }
}
