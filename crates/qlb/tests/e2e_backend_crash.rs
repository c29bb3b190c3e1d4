//! A backend crashes (SIGKILL: no GOAWAY, no CONNECTION_CLOSE) under a load balancer with
//! health checks every 200 ms:
//!
//! 1. new connections avoid it once `unhealthy_threshold` checks in a row got no answer
//!    (about `interval * unhealthy_threshold + timeout`): the test polls the admin API's
//!    `/status` for when the backend shows `down` and when the load balancer last forwarded a
//!    datagram to it, and opens new connections every 50 ms meanwhile, all of which must
//!    complete on the surviving backends;
//! 2. its clients learn at once that their connections are gone, instead of waiting for their
//!    idle timeout (30 s): once the backend is down, the load balancer sends their datagrams
//!    to the fallback, where a surviving backend, which derives the same stateless-reset key
//!    from the cluster secret, answers with a stateless reset. The clients here are quinn
//!    (which reports the reset as `ConnectionError::Reset`) with HTTP/3 on top: one sending a
//!    request every 50 ms, one idle with a 1 s keep-alive.
//!
//! The surviving backends' clients are not disturbed. (aioquic 1.7 cannot be the client:
//! it never checks incoming datagrams for a stateless reset token, so it waits for its idle
//! timeout.)

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qlb_testkit::{H3Client, TestResult, fetch, transport, within};
use support::cluster::{Cluster, HealthChecks, Lb, Spec};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

/// The load balancer's health checks ([`Spec::checked`]).
const HEALTH: HealthChecks = HealthChecks::FAST;

/// The QUIC idle timeout of the clients and of `qlb serve` (quinn's default on both sides):
/// how long a client of a dead backend waits without a stateless reset.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The test clients' keep-alive (quinn sends a PING when nothing else was sent for this long).
const KEEP_ALIVE: Duration = Duration::from_secs(1);

/// How often the busy client sends a request, and how often a new connection is opened
/// after the crash.
const EVERY: Duration = Duration::from_millis(50);

/// How long new connections are opened after the crash.
const NEW_CONNECTIONS_FOR: Duration = Duration::from_secs(3);

/// A handshake slower than this had its first Initial lost (sent to the dead backend) and
/// retransmitted: quinn's first Initial timeout is about 1 s.
const RETRANSMITTED: Duration = Duration::from_millis(500);

/// The longest a connection or a wait may take (a debug build on a loaded 2-core machine).
const TIMEOUT: Duration = Duration::from_secs(20);

/// Attempts at placing the clients (two on the crashing backend, one on each other).
const PLACEMENT_ATTEMPTS: usize = 60;

/// The backend that crashes.
const VICTIM: &str = "b1";

#[test]
fn a_crashed_backend_is_avoided_and_its_clients_are_reset() -> TestResult {
    let mut cluster = Cluster::start(Spec::checked())?;
    cluster.wait_until_up(TIMEOUT)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let lb = cluster.lbs[0].addr;
    let clients = runtime.block_on(place_clients(lb, cluster.backends.len()))?;
    let (victims, survivors): (Vec<_>, Vec<_>) =
        clients.into_iter().partition(|c| c.backend == VICTIM);

    let crash = crash(&mut cluster, &runtime, &victims)?;
    new_connections_avoid_it(&crash)?;
    its_clients_are_reset(&crash);
    // The other backends' clients did not notice.
    runtime.block_on(async {
        for mut survivor in survivors {
            assert_eq!(survivor.h3.quic.close_reason(), None);
            assert_eq!(survivor.h3.backend().await?, survivor.backend);
        }
        TestResult::Ok(())
    })
}

/// What the test saw of the crash.
struct Crash {
    killed: Instant,
    /// The load balancer's view of the backends, every 10 ms or so from before the kill.
    samples: Vec<Sample>,
    /// When and how each of the victim's connections ended, the busy one first.
    ends: Vec<(Instant, quinn::ConnectionError)>,
    /// The connections opened after the kill.
    attempts: Vec<Attempt>,
}

/// SIGKILLs [`VICTIM`] while `victims[0]` sends a request every [`EVERY`] and the others
/// idle with their keep-alive, the admin API is polled, and new connections are opened.
fn crash(cluster: &mut Cluster, runtime: &Runtime, victims: &[Client]) -> TestResult<Crash> {
    let lb_addr = cluster.lbs[0].addr;
    let Cluster { backends, lbs, .. } = cluster;
    let victim = backends
        .iter_mut()
        .find(|b| b.name == VICTIM)
        .ok_or("no victim")?;
    let stop_watching = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let watcher = scope.spawn(|| watch(&lbs[0], VICTIM, &stop_watching));
        let crashed = runtime.block_on(async {
            let mut busy = victims[0].h3.sender();
            tokio::spawn(async move {
                while fetch(&mut busy, "GET", "/whoami", Vec::new())
                    .await
                    .is_ok_and(|reply| reply.status == http::StatusCode::OK)
                {
                    tokio::time::sleep(EVERY).await;
                }
            });
            let ends: Vec<_> = victims
                .iter()
                .map(|victim| {
                    let quic = victim.h3.quic.clone();
                    tokio::spawn(async move {
                        let error = quic.closed().await;
                        (Instant::now(), error)
                    })
                })
                .collect();
            tokio::time::sleep(Duration::from_millis(300)).await;

            let killed = Instant::now();
            victim.kill();
            let attempts = new_connections(lb_addr).await;
            let mut ended = Vec::new();
            for end in ends {
                let end = tokio::time::timeout(IDLE_TIMEOUT + TIMEOUT, end).await;
                ended.push(end.map_err(|_| "a victim's connection outlived its idle timeout")??);
            }
            TestResult::Ok((killed, ended, attempts))
        });
        stop_watching.store(true, Ordering::Relaxed);
        let samples = watcher
            .join()
            .map_err(|_| "the status watcher panicked")??;
        let (killed, ends, attempts) = crashed?;
        Ok(Crash {
            killed,
            samples,
            ends,
            attempts,
        })
    })
}

/// (1) The load balancer takes the dead backend out within about `interval *
/// unhealthy_threshold + timeout`, and sends it nothing after; every new connection
/// completes on a survivor (those whose first Initial went to the dead backend after a
/// retransmission); the survivors stay in.
fn new_connections_avoid_it(crash: &Crash) -> TestResult {
    let since_kill = |at: Instant| at.saturating_duration_since(crash.killed);
    let samples = &crash.samples;
    if let Some(sample) = samples.iter().find(|s| !s.others_out.is_empty()) {
        return Err(format!(
            "a surviving backend was taken out {:?} after the kill: {:?}",
            since_kill(sample.at),
            sample.others_out
        )
        .into());
    }
    let first_down = samples
        .iter()
        .position(|s| s.at > crash.killed && s.effective_state == "down")
        .ok_or("the load balancer never showed the crashed backend down")?;
    let down = since_kill(samples[first_down].at);
    let last_forwarded = samples
        .windows(2)
        .filter(|pair| pair[1].packets > pair[0].packets)
        .map(|pair| since_kill(pair[1].at))
        .next_back();
    // A status collects the counters before it reads the states, which the health checks
    // change together with the routing pool: the counters of the first sample showing the
    // backend down may predate the swap, those of the next one do not.
    let baseline = samples.get(first_down + 1).unwrap_or(&samples[first_down]);
    let after_down = samples
        .last()
        .map_or(0, |s| s.packets.saturating_sub(baseline.packets));
    let mut retransmitted = Vec::new();
    for attempt in &crash.attempts {
        let (handshake, backend) = attempt
            .result
            .as_ref()
            .map_err(|err| format!("a new connection failed: {err}"))?;
        assert_ne!(backend, VICTIM);
        if *handshake > RETRANSMITTED {
            retransmitted.push(since_kill(attempt.started));
        }
    }
    eprintln!(
        "backend crash: {VICTIM} SIGKILLed; the LB showed it down {down:?} after the kill \
         (health checks every {:?}, timeout {:?}, down after {} failures: about {:?}); the \
         LB last forwarded a datagram to it {last_forwarded:?} after the kill, {after_down} \
         once its status showed it down",
        HEALTH.interval,
        HEALTH.timeout,
        HEALTH.unhealthy_threshold,
        HEALTH.detection_time(),
    );
    eprintln!(
        "backend crash: {} new connections opened every {EVERY:?} after the kill all \
         completed on the survivors; {} had their first Initial sent to the dead backend \
         (handshake over {RETRANSMITTED:?}), the last of them started {:?} after the kill",
        crash.attempts.len(),
        retransmitted.len(),
        retransmitted.last(),
    );
    // Generous: the health checks' timers run late on a loaded machine.
    assert!(
        down < HEALTH.detection_time() * 10,
        "down only {down:?} after the kill"
    );
    assert_eq!(
        after_down, 0,
        "datagrams forwarded to the dead backend after it was shown down"
    );
    Ok(())
}

/// (2) The dead backend's clients got a stateless reset, long before their idle timeout.
fn its_clients_are_reset(crash: &Crash) {
    let down = crash
        .samples
        .iter()
        .find(|s| s.at > crash.killed && s.effective_state == "down")
        .map_or(crash.killed, |s| s.at);
    for (i, (at, error)) in crash.ends.iter().enumerate() {
        let kind = if i == 0 {
            "busy (a request every 50 ms)"
        } else {
            "idle (keep-alive every 1 s)"
        };
        let after = at.saturating_duration_since(crash.killed);
        eprintln!(
            "backend crash: the {kind} client of {VICTIM} got \"{error}\" {after:?} after the \
             kill, {:?} after the LB showed it down (idle timeout {IDLE_TIMEOUT:?})",
            at.saturating_duration_since(down),
        );
        assert!(
            matches!(error, quinn::ConnectionError::Reset),
            "the {kind} client got {error:?}, not a stateless reset"
        );
        assert!(after < IDLE_TIMEOUT / 3, "{after:?}");
    }
}

/// An HTTP/3 connection on a UDP socket of its own (as another client's would be), through
/// the load balancer, and the backend that answered its first `/whoami`.
struct Client {
    h3: H3Client,
    backend: String,
    handshake: Duration,
}

impl Client {
    async fn connect(lb: SocketAddr) -> TestResult<Self> {
        let mut config = qlb_client::Trust::Insecure.client_config()?;
        config.transport_config(transport(IDLE_TIMEOUT, Some(KEEP_ALIVE))?);
        let started = Instant::now();
        let mut h3 = H3Client::connect_with(lb, config).await?;
        let handshake = started.elapsed();
        let backend = within(TIMEOUT, "GET /whoami", h3.backend()).await??;
        Ok(Self {
            h3,
            backend,
            handshake,
        })
    }
}

/// Opens connections until [`VICTIM`] has two and every other backend one (the load
/// balancer places them by the hash of their first DCID).
async fn place_clients(lb: SocketAddr, backends: usize) -> TestResult<Vec<Client>> {
    let mut clients: Vec<Client> = Vec::new();
    for _ in 0..PLACEMENT_ATTEMPTS {
        let on = |name: &str| clients.iter().filter(|c| c.backend == name).count();
        let others = (2..=backends).all(|i| on(&format!("b{i}")) >= 1);
        if on(VICTIM) >= 2 && others {
            return Ok(clients);
        }
        clients.push(Client::connect(lb).await?);
    }
    Err(format!("{PLACEMENT_ATTEMPTS} connections did not reach every backend").into())
}

/// A new connection opened after the crash.
struct Attempt {
    started: Instant,
    /// Its handshake time and backend, or why it failed.
    result: Result<(Duration, String), String>,
}

/// Opens a connection every [`EVERY`] for [`NEW_CONNECTIONS_FOR`], each asking `/whoami`
/// once; returns them all once they are done.
async fn new_connections(lb: SocketAddr) -> Vec<Attempt> {
    let mut attempts = JoinSet::new();
    let until = Instant::now() + NEW_CONNECTIONS_FOR;
    while Instant::now() < until {
        let started = Instant::now();
        attempts.spawn(async move {
            let result = match Client::connect(lb).await {
                // Dropped at once: the connection closes.
                Ok(client) => Ok((client.handshake, client.backend)),
                Err(err) => Err(err.to_string()),
            };
            Attempt { started, result }
        });
        tokio::time::sleep(EVERY).await;
    }
    let mut done: Vec<Attempt> = attempts.join_all().await;
    done.sort_by_key(|attempt| attempt.started);
    done
}

/// One look at a backend in the load balancer's `/status`.
struct Sample {
    at: Instant,
    effective_state: String,
    /// Client datagrams forwarded to it so far.
    packets: u64,
    /// The other backends that were not active, with their health.
    others_out: Vec<String>,
}

/// Polls `/status` for backend `name` until `stop`.
fn watch(lb: &Lb, name: &str, stop: &AtomicBool) -> TestResult<Vec<Sample>> {
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let status = lb.status()?;
        let backend = support::cluster::backend_entry(&status, name)?;
        let others_out = status["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["name"] != name && b["effective_state"] != "active")
            .map(|b| format!("{}: {}", b["name"], b["health"]))
            .collect();
        samples.push(Sample {
            at: Instant::now(),
            effective_state: backend["effective_state"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            packets: backend["to_backend"]["packets"]
                .as_u64()
                .unwrap_or_default(),
            others_out,
        });
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(samples)
}
