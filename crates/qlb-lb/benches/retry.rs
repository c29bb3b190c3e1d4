//! Retry offload against the plain Initial path, in one run and harness: a generator sends
//! token-less 1200-octet client Initials, each with a fresh DCID, flat out at a data plane
//! with one worker (one core), which either forwards them (`[retry] mode = "off"`: the
//! Maglev fallback, the DCID table, one flow to a backend that is a UDP sink) or answers each
//! with a Retry (`mode = "always"`: parse, a QUIC-LB CID of the fallback's backend, a sealed
//! token, the integrity tag). The rate is what the worker handled per second, from its own
//! counters (fallback decisions, Retries sent); the kernel drops what it could not take.
//!
//! ```text
//! cargo bench -p qlb-lb --bench retry
//! RETRY_BENCH_SECONDS=5 RETRY_BENCH_ROUNDS=5 cargo bench -p qlb-lb --bench retry
//! ```

use std::net::{SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use qlb_lb::dataplane::{Dataplane, DataplaneOptions, RetryOffload, RetryTrigger};
use qlb_retry::{TokenKey, TokenKeys};
use qlb_router::{Backend, Pool, Route};
use qlb_testkit::fixtures;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Initials the worker handled per second with `retry`, over `seconds`.
fn run(retry: Option<RetryOffload>, seconds: u64) -> Result<f64, Box<dyn std::error::Error>> {
    let sink = UdpSocket::bind("127.0.0.1:0")?;
    let backend = Backend::new("b1", sink.local_addr()?)
        .with_server_id(fixtures::config(1).id(), "0a0b".parse()?);
    let pool = Arc::new(Pool::new(fixtures::decoder(&[1]), [backend])?);
    let options = DataplaneOptions {
        retry,
        ..DataplaneOptions::default()
    };
    let dataplane = Dataplane::start(&["127.0.0.1:0".parse()?], NonZeroUsize::MIN, pool, options)?;
    let lb: SocketAddr = dataplane.local_addrs()[0];
    let generator = UdpSocket::bind("127.0.0.1:0")?;
    let stop = Arc::new(AtomicBool::new(false));
    let sending = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut initial = vec![
                0xc0, 0, 0, 0, 1, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x44, 0x9e,
            ];
            initial.resize(1200, 0);
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                initial[6..14].copy_from_slice(&n.to_be_bytes());
                let _ = generator.send_to(&initial, lb);
            }
        })
    };
    // A warm-up, then the window between two readings of the worker's counters.
    std::thread::sleep(Duration::from_millis(300));
    let handled =
        |stats: &qlb_lb::dataplane::Stats| stats.retry.sent + stats.router.routed(Route::Fallback);
    let (start, before) = (Instant::now(), handled(&dataplane.stats()));
    std::thread::sleep(Duration::from_secs(seconds));
    let (elapsed, after) = (start.elapsed(), handled(&dataplane.stats()));
    stop.store(true, Ordering::Relaxed);
    sending.join().map_err(|_| "the generator panicked")?;
    dataplane.shutdown()?;
    drop(sink);
    Ok((after - before) as f64 / elapsed.as_secs_f64())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds = setting("RETRY_BENCH_SECONDS", 2);
    let rounds = setting("RETRY_BENCH_ROUNDS", 3);
    let always = RetryOffload {
        trigger: RetryTrigger::Always,
        keys: Arc::new(TokenKeys::new(
            TokenKey::from_cluster_secret(fixtures::CLUSTER_SECRET),
            None,
            10,
        )),
        config_id: fixtures::config(1).id(),
    };
    println!("round  plain Initials forwarded/s  Retries sent/s  ratio");
    for round in 1..=rounds {
        let plain = run(None, seconds)?;
        let retried = run(Some(always.clone()), seconds)?;
        println!(
            "{round:>5}  {plain:>26.0}  {retried:>14.0}  {:>5.2}",
            retried / plain
        );
    }
    Ok(())
}
