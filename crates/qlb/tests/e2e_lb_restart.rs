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
//!
//! In GUE mode the return is stateless: the backend's replies name the client inside, so the
//! restarted load balancer forwards the backend's next datagram (its loss-recovery probe) at
//! once, and a client without any keep-alive resumes without sending first.

mod support;

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use qlb_testkit::peers::aioquic_available;
use support::TestResult;
use support::cluster::{Cluster, Mode, Spec};
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

/// GUE mode: the download must resume this soon after the restart, with no keep-alive.
const GUE_RESUME: Duration = Duration::from_secs(1);

#[test]
fn a_download_survives_the_load_balancer_being_killed_and_restarted() -> TestResult {
    download_across_a_restart(Mode::Proxy, KEEP_ALIVE)
}

#[test]
fn gue_mode_a_download_without_keep_alive_resumes_after_the_load_balancer_restarts() -> TestResult {
    download_across_a_restart(Mode::Gue, Duration::ZERO)
}

/// Downloads through the load balancer, which is killed and restarted mid-way; the client
/// sends a PING every `keep_alive` (`ZERO`: never).
fn download_across_a_restart(mode: Mode, keep_alive: Duration) -> TestResult {
    if !aioquic_available() {
        return Ok(());
    }
    let mut cluster = Cluster::start(Spec {
        mode,
        ..Spec::default()
    })?;
    let started = Instant::now();
    let mut download = Download::start(
        cluster.lbs[0].addr,
        &format!("/bytes/{SIZE}"),
        cluster.dir(),
        keep_alive,
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
    let at_restart = download.arrived();
    let restarted = Instant::now();
    while download.arrived() == at_restart && download.running()? && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    let resumed_in = restarted.elapsed();

    let downloaded = download.finish(deadline.saturating_duration_since(Instant::now()))?;
    assert_eq!(downloaded.status, 200);
    assert_eq!(downloaded.length, SIZE, "download incomplete");
    assert_eq!(
        zeros(download.body())?,
        SIZE,
        "download incomplete or corrupt"
    );

    let served = cluster.sole_server()?;
    let moves = match mode {
        // The restarted load balancer relays through a new upstream socket: the backend sees
        // its client's address change.
        Mode::Proxy => served.client_address_changes()?,
        // The backend sees the client itself, whose address did not change.
        Mode::Gue => served.metric("qlb_server_peer_address_changes_total")?,
    };
    eprintln!(
        "LB restart ({mode:?}): {} MB downloaded in {:?}; the LB was killed at {:.1} MB and \
         answered again {downtime:?} later; the download resumed {resumed_in:?} after the \
         restart; the longest pause in the download was {:?} (keep-alive every \
         {keep_alive:?}); served by {} alone, which saw the client's address change {moves} \
         time(s)",
        SIZE / 1_000_000,
        downloaded.elapsed,
        at_kill as f64 / 1e6,
        downloaded.longest_pause,
        served.name,
    );
    if mode == Mode::Gue {
        assert_eq!(
            moves, 0.0,
            "the backend saw the client's own address throughout"
        );
        assert!(
            resumed_in <= GUE_RESUME,
            "without a keep-alive the download resumed only {resumed_in:?} after the restart"
        );
    }
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
