//! Requests per second for small GETs over several concurrent connections, and handshakes
//! per second, for qlb-server beside a minimal plain h3 + h3-quinn server, in the same
//! process and run (servers take turns, in rotating order; clients share the process).
//!
//! Each figure is given per wall-clock second and per CPU second of the whole process
//! (clients included, from `/proc/self/stat`): on a shared machine other work steals wall
//! time from some rounds and not others, while CPU time per request moves much less.
//!
//! ```text
//! cargo bench -p qlb-server --bench h3_load     # H3_LOAD_SECONDS (default 2) x H3_LOAD_ROUNDS (5)
//! H3_LOAD_ONLY=1 cargo bench -p qlb-server --bench h3_load   # one contender (0, 1, 2), for profiling
//! ```

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http::{Request, Response};
use http_body_util::Full;
use qlb_server::{HttpService, Identity, RequestBody, ResponseBody, Server};
use qlb_testkit::SelfSigned;
use quic_lb::{Config, ConfigId, Key};
use rustls::pki_types::CertificateDer;

type BenchResult<T = ()> = Result<T, qlb_server::BoxError>;

/// Client connections during the request benchmark.
const CONNECTIONS: usize = 8;
/// Requests in flight per connection (each a loop of sequential GETs).
const STREAMS_PER_CONNECTION: usize = 4;
/// Concurrent connect-and-close loops during the handshake benchmark.
const HANDSHAKERS: usize = 8;
const BODY: &[u8] = b"hello, world\n";
/// The clients' QUIC idle timeout: longer than any round.
const IDLE: Duration = Duration::from_secs(30);
/// Load before counting starts: connections settle, congestion windows open.
const WARM_UP: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Contender {
    /// quinn's default endpoint, h3's `accept()` loop, one task per request: the floor.
    PlainH3Quinn,
    /// qlb-server with a `tower::service_fn` handler.
    QlbServer,
    /// qlb-server with an axum `Router` (routing included).
    QlbServerAxum,
}

impl Contender {
    fn label(self) -> &'static str {
        match self {
            Self::PlainH3Quinn => "plain h3-quinn",
            Self::QlbServer => "qlb-server (tower service_fn)",
            Self::QlbServerAxum => "qlb-server (axum Router)",
        }
    }
}

/// One measurement: operations per wall-clock second and per CPU second.
#[derive(Clone, Copy, Debug, Default)]
struct Rate {
    per_second: f64,
    per_cpu_second: f64,
}

/// A server under test, running until dropped.
struct Running {
    addr: SocketAddr,
    stop: Box<dyn FnOnce() + Send>,
}

fn main() -> BenchResult {
    let setting = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let seconds = setting("H3_LOAD_SECONDS", 2);
    let rounds = setting("H3_LOAD_ROUNDS", 5) as usize;
    let round = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let identity = SelfSigned::localhost()?;
        let cert = identity.certificate();
        let all = [Contender::PlainH3Quinn, Contender::QlbServer, Contender::QlbServerAxum];
        let contenders = match std::env::var("H3_LOAD_ONLY").ok().and_then(|i| i.parse::<usize>().ok()) {
            Some(only) => all.get(only..=only).ok_or("H3_LOAD_ONLY: 0, 1 or 2")?,
            None => &all[..],
        };
        let mut requests = vec![Vec::new(); contenders.len()];
        let mut handshakes = vec![Vec::new(); contenders.len()];
        for round_number in 0..rounds {
            for turn in 0..contenders.len() {
                let i = (turn + round_number) % contenders.len();
                let server = start(contenders[i], &identity)?;
                let rps = request_rate(server.addr, cert, round).await?;
                let hps = handshake_rate(server.addr, cert, round).await?;
                (server.stop)();
                eprintln!(
                    "round {} {:<30} {:>7.0} req/s {:>7.0} req/cpu-s {:>6.0} hs/s {:>6.0} hs/cpu-s",
                    round_number + 1,
                    contenders[i].label(),
                    rps.per_second,
                    rps.per_cpu_second,
                    hps.per_second,
                    hps.per_cpu_second,
                );
                requests[i].push(rps);
                handshakes[i].push(hps);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        println!(
            "\n{CONNECTIONS} connections x {STREAMS_PER_CONNECTION} streams of GETs ({} octet body); \
             {HANDSHAKERS} concurrent handshakers; median of {rounds} rounds of {seconds} s\n",
            BODY.len()
        );
        println!("| server | requests/s | per CPU-s | ratio (CPU) | handshakes/s | per CPU-s | ratio (CPU) |");
        println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        let base_requests = median(&requests[0], |r| r.per_cpu_second);
        let base_handshakes = median(&handshakes[0], |r| r.per_cpu_second);
        for (i, contender) in contenders.iter().enumerate() {
            let requests_cpu = median(&requests[i], |r| r.per_cpu_second);
            let handshakes_cpu = median(&handshakes[i], |r| r.per_cpu_second);
            println!(
                "| {} | {:.0} | {requests_cpu:.0} | {:.3} | {:.0} | {handshakes_cpu:.0} | {:.3} |",
                contender.label(),
                median(&requests[i], |r| r.per_second),
                requests_cpu / base_requests,
                median(&handshakes[i], |r| r.per_second),
                handshakes_cpu / base_handshakes,
            );
        }
        Ok(())
    })
}

fn median(rates: &[Rate], field: impl Fn(&Rate) -> f64) -> f64 {
    let mut values: Vec<f64> = rates.iter().map(field).collect();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// What the load tasks of one measurement share: whether to count yet, whether to stop,
/// and how many operations completed while counting.
#[derive(Default)]
struct Tally {
    counting: AtomicBool,
    stop: AtomicBool,
    completed: AtomicU64,
}

impl Tally {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed)
    }

    fn completed_one(&self) {
        if self.counting.load(Ordering::Relaxed) {
            self.completed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Lets `tasks` warm up, counts what they complete in `round` (wall clock and process
/// CPU), then stops them.
async fn measure(
    tally: &Tally,
    tasks: Vec<tokio::task::JoinHandle<BenchResult>>,
    round: Duration,
) -> BenchResult<Rate> {
    tokio::time::sleep(WARM_UP).await;
    tally.counting.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let cpu_before = process_cpu()?;
    tokio::time::sleep(round).await;
    let done = tally.completed.load(Ordering::Relaxed) as f64;
    let wall = started.elapsed();
    let cpu = process_cpu()? - cpu_before;
    tally.stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await??;
    }
    Ok(Rate {
        per_second: done / wall.as_secs_f64(),
        per_cpu_second: done / cpu.as_secs_f64(),
    })
}

/// CPU time (user + system) of this process so far, all threads, from `/proc/self/stat`.
fn process_cpu() -> BenchResult<Duration> {
    /// Linux reports these fields in USER_HZ ticks, 100 per second on every architecture
    /// the kernel's ABI fixes it for.
    const TICKS_PER_SECOND: u64 = 100;
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .ok_or("stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields.get(11).ok_or("utime")?.parse::<u64>()?
        + fields.get(12).ok_or("stime")?.parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 1000 / TICKS_PER_SECOND))
}

fn start(contender: Contender, identity: &SelfSigned) -> BenchResult<Running> {
    match contender {
        Contender::PlainH3Quinn => start_plain(identity),
        Contender::QlbServer => start_qlb(identity, |_| {
            tower::service_fn(|_request: Request<RequestBody>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(
                    BODY,
                ))))
            })
        }),
        Contender::QlbServerAxum => start_qlb(identity, |_| {
            axum::Router::new().route("/", axum::routing::get(|| async { BODY }))
        }),
    }
}

fn start_qlb<S, B>(
    identity: &SelfSigned,
    service: impl FnOnce(&Server) -> S,
) -> BenchResult<Running>
where
    S: HttpService<B>,
    B: ResponseBody,
{
    let config = Config::new(ConfigId::new(0)?, 2, 6, Some(Key::random()))?;
    let server = Server::builder(config, "0001".parse()?)
        .cluster_secret(b"bench")
        .identity(Identity::new(
            vec![identity.certificate().clone()],
            identity.private_key(),
        ))
        .bind("127.0.0.1:0".parse()?)?;
    let addr = server.local_addr()?;
    let service = service(&server);
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve(service).await }
    });
    Ok(Running {
        addr,
        stop: Box::new(move || {
            tokio::spawn(async move {
                server.shutdown(Duration::from_millis(100)).await;
                let _ = serving.await;
            });
        }),
    })
}

/// The minimal HTTP/3 server anyone would write from h3's README.
fn start_plain(identity: &SelfSigned) -> BenchResult<Running> {
    let config = identity.server_config()?;
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse()?)?;
    let addr = endpoint.local_addr()?;
    let accepting = tokio::spawn({
        let endpoint = endpoint.clone();
        async move {
            while let Some(incoming) = endpoint.accept().await {
                tokio::spawn(async move {
                    let Ok(connection) = incoming.await else {
                        return;
                    };
                    let Ok(mut h3) = h3::server::Connection::<_, Bytes>::new(
                        h3_quinn::Connection::new(connection),
                    )
                    .await
                    else {
                        return;
                    };
                    while let Ok(Some(resolver)) = h3.accept().await {
                        tokio::spawn(async move {
                            let Ok((_request, mut stream)) = resolver.resolve_request().await
                            else {
                                return;
                            };
                            let _ = stream.send_response(Response::new(())).await;
                            let _ = stream.send_data(Bytes::from_static(BODY)).await;
                            let _ = stream.finish().await;
                        });
                    }
                });
            }
        }
    });
    Ok(Running {
        addr,
        stop: Box::new(move || {
            endpoint.close(0u32.into(), b"");
            accepting.abort();
        }),
    })
}

/// Small GETs over `CONNECTIONS` connections with `STREAMS_PER_CONNECTION` requests in
/// flight on each.
async fn request_rate(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    round: Duration,
) -> BenchResult<Rate> {
    let config = SelfSigned::client_config_for(cert, IDLE)?;
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    let mut connections = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(config.clone());
        let connection = endpoint.connect(addr, "localhost")?.await?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(connection)).await?;
        let driving = tokio::spawn(async move { poll_fn(|cx| driver.poll_close(cx)).await });
        connections.push((endpoint, driving));
        for _ in 0..STREAMS_PER_CONNECTION {
            let (mut send, tally) = (send.clone(), tally.clone());
            tasks.push(tokio::spawn(async move {
                while tally.running() {
                    let request = Request::get("https://localhost/").body(())?;
                    let mut stream = send.send_request(request).await?;
                    stream.finish().await?;
                    stream.recv_response().await?;
                    while let Some(mut chunk) = stream.recv_data().await? {
                        chunk.advance(chunk.remaining());
                    }
                    tally.completed_one();
                }
                Ok(())
            }));
        }
    }
    let rate = measure(&tally, tasks, round).await?;
    for (endpoint, driving) in connections {
        endpoint.close(0u32.into(), b"");
        driving.abort();
    }
    Ok(rate)
}

/// QUIC + TLS handshakes (connect, then close at once), `HANDSHAKERS` at a time.
async fn handshake_rate(
    addr: SocketAddr,
    cert: &CertificateDer<'static>,
    round: Duration,
) -> BenchResult<Rate> {
    let config = SelfSigned::client_config_for(cert, IDLE)?;
    let tally = Arc::new(Tally::default());
    let mut tasks = Vec::new();
    for _ in 0..HANDSHAKERS {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(config.clone());
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            while tally.running() {
                let connection = endpoint.connect(addr, "localhost")?.await?;
                connection.close(0u32.into(), b"");
                tally.completed_one();
            }
            endpoint.wait_idle().await;
            Ok(())
        }));
    }
    measure(&tally, tasks, round).await
}
