//! The load balancer's forwarding benchmark (issue 4, item 8): packets per second at
//! saturation and added latency at a fixed rate, through a raw forwarder (the data plane's
//! I/O with no parsing: the ceiling), Debian's nginx `stream` UDP proxy, and the data plane
//! `qlb lb` runs (1 worker) in proxy mode and in GUE mode (the sinks then decapsulate), all in
//! the same run and harness, with 1 and with 64 client flows.
//!
//! The traffic is QUIC-shaped: short-header datagrams whose DCIDs are QUIC-LB connection IDs
//! issued for 4 backends (encoders of the configuration's `[[quic_lb]]` table, four-pass as
//! in the documented example), flow `i` holding a connection of backend `i mod 4`. The
//! backends are UDP sinks on loopback that count every datagram, check its length and (for
//! qlb) that it reached the backend its CID names, and time it from the send time it carries.
//! On a machine with 2 or more CPUs the generator and the sinks run on CPU 0 and the
//! forwarder under test on CPU 1 (`taskset`; nginx by `worker_cpu_affinity`), so each
//! contender gets one core; the forwarder's own CPU time is reported beside its rate.
//!
//! Saturation: the generator sends flat out for a warm-up and a window; the rate is what
//! reached the sinks in the window. Meanwhile the sinks do not read (they would take CPU from
//! the generator), and what reached them is the kernel's count of datagrams dropped at their
//! full sockets (`drops` in `/proc/net/udp`; the sinks do not enable GRO, so a datagram is
//! one count). Latency: the generator sends at a fixed rate, one datagram at a time stamped
//! with its send time, and the sinks read and time every one; the percentiles are one-way,
//! generator to sink, and the direct path is the baseline.
//!
//! ```text
//! cargo bench -p qlb-lb --bench forwarding
//! LB_BENCH_ROUNDS=1 LB_BENCH_SECONDS=1 cargo bench -p qlb-lb --bench forwarding   # quicker
//! LB_BENCH_ONLY=qlb LB_BENCH_SIZES=1200 LB_BENCH_FLOWS=64 LB_BENCH_SECONDS=20 \
//!     cargo bench -p qlb-lb --bench forwarding                  # one contender, to profile
//! ```
//!
//! Settings (environment): `LB_BENCH_SECONDS` (saturation window per case, default 1.5),
//! `LB_BENCH_ROUNDS` (default 3; contenders take turns in rotating order each round),
//! `LB_BENCH_RATE` (datagrams/s of the latency phase, default 20000), `LB_BENCH_BURST`
//! (datagrams per client send at saturation, default 1; more are sent as one GSO burst,
//! which a GRO socket receives whole, as bulk QUIC senders do), `LB_BENCH_RPS=1` (loopback's
//! receive work on the forwarder's CPU instead of the sender's, `steering.rs`; needs root),
//! `LB_BENCH_SIZES`
//! (default `1200,64`), `LB_BENCH_FLOWS` (default `1,64`), `LB_BENCH_ONLY` (some of `direct,
//! raw,nginx,qlb,qlb-gue`), `LB_BENCH_PIN=0` (no CPU pinning). nginx must be installed (`apt-get
//! install -y nginx libnginx-mod-stream`); without it the run fails unless `LB_BENCH_ONLY`
//! leaves nginx out.

mod forwarders;
mod steering;
mod traffic;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use forwarders::{Nginx, RawForwarder, Running, Task};
use qlb_lb::config::LbConfig;
use quic_lb::Encoder;
use traffic::{ClientFlow, Layout, Pace, Sinks};

/// The harness's error type: anything, with a message.
pub type BenchResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const BACKENDS: usize = 4;
/// Load before measuring: flows open, queues settle.
const WARM_UP: Duration = Duration::from_millis(500);
/// How long the latency phase records.
const LATENCY_WINDOW: Duration = Duration::from_secs(1);
/// The longest a contender may take to forward the first datagram of every flow.
const READY_WAIT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Contender {
    /// Clients send to the sinks directly: the latency baseline, and what the load side
    /// alone moves.
    Direct,
    Raw,
    Nginx,
    Qlb,
    /// `mode = "gue"`: datagrams reach the sinks encapsulated.
    QlbGue,
}

impl Contender {
    const ALL: [Self; 5] = [
        Self::Direct,
        Self::Raw,
        Self::Nginx,
        Self::Qlb,
        Self::QlbGue,
    ];

    fn key(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Raw => "raw",
            Self::Nginx => "nginx",
            Self::Qlb => "qlb",
            Self::QlbGue => "qlb-gue",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct (no forwarder)",
            Self::Raw => "raw forwarder",
            Self::Nginx => "nginx stream (1 worker)",
            Self::Qlb => "qlb lb (1 worker)",
            Self::QlbGue => "qlb lb, gue mode (1 worker)",
        }
    }

    fn start(
        self,
        sinks: &[SocketAddr],
        configs: &Configs,
        cpu: Option<usize>,
    ) -> BenchResult<Running> {
        Ok(match self {
            Self::Direct => Running::Direct,
            Self::Raw => Running::Raw(RawForwarder::start(sinks, cpu)?),
            Self::Nginx => Running::Nginx(Nginx::start(sinks, cpu)?),
            Self::Qlb => forwarders::start_qlb(&configs.proxy, cpu)?,
            Self::QlbGue => forwarders::start_qlb(&configs.gue, cpu)?,
        })
    }

    /// Whether sinks can check that datagrams reached the backend their CID names: the
    /// other contenders do not route by CID.
    fn routes_by_cid(self) -> bool {
        matches!(self, Self::Direct | Self::Qlb | Self::QlbGue)
    }
}

/// `qlb lb`'s configurations of a case, one per mode, with the sinks as backends.
struct Configs {
    proxy: LbConfig,
    gue: LbConfig,
}

struct Settings {
    window: Duration,
    rounds: usize,
    rate: u64,
    /// Datagrams per flat-out send (GSO when more than 1).
    burst: usize,
    /// Whether loopback's receive work is steered to the forwarder's CPU ([`steering`]).
    rps: bool,
    sizes: Vec<usize>,
    flows: Vec<usize>,
    only: Vec<Contender>,
    /// CPUs for the load (generator and sinks) and for the forwarder.
    load_cpu: Option<usize>,
    forwarder_cpu: Option<usize>,
}

impl Settings {
    fn from_env() -> BenchResult<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let list = |name: &str, default: &str| -> BenchResult<Vec<usize>> {
            var(name)
                .as_deref()
                .unwrap_or(default)
                .split(',')
                .map(|n| {
                    n.trim()
                        .parse()
                        .map_err(|e| format!("{name}: {n}: {e}").into())
                })
                .collect()
        };
        let seconds: f64 = var("LB_BENCH_SECONDS").map_or(Ok(1.5), |v| v.parse())?;
        let only = match var("LB_BENCH_ONLY") {
            None => Contender::ALL.to_vec(),
            Some(names) => names
                .split(',')
                .map(|name| {
                    Contender::ALL
                        .into_iter()
                        .find(|c| c.key() == name.trim())
                        .ok_or_else(|| format!("LB_BENCH_ONLY: unknown contender {name}"))
                })
                .collect::<Result<_, _>>()?,
        };
        let pin = var("LB_BENCH_PIN").is_none_or(|v| v != "0");
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        let (load_cpu, forwarder_cpu) = if pin && cpus >= 2 {
            (Some(0), Some(1))
        } else {
            (None, None)
        };
        Ok(Self {
            window: Duration::try_from_secs_f64(seconds)?,
            rounds: var("LB_BENCH_ROUNDS").map_or(Ok(3), |v| v.parse())?,
            rate: var("LB_BENCH_RATE").map_or(Ok(20_000), |v| v.parse())?,
            burst: var("LB_BENCH_BURST").map_or(Ok(1), |v| v.parse())?,
            rps: var("LB_BENCH_RPS").is_some_and(|v| v != "0"),
            sizes: list("LB_BENCH_SIZES", "1200,64")?,
            flows: list("LB_BENCH_FLOWS", "1,64")?,
            only,
            load_cpu,
            forwarder_cpu,
        })
    }
}

/// One contender's figures in one case and round.
#[derive(Clone, Debug, Default)]
struct Measurement {
    /// Datagrams/s the sinks received at saturation.
    forwarded: f64,
    /// Datagrams/s the generator sent meanwhile.
    offered: f64,
    /// The forwarder's CPU seconds per second at saturation, and per datagram forwarded.
    cpu_share: Option<f64>,
    cpu_per_datagram: Option<Duration>,
    /// One-way latency at the fixed rate, generator to sink.
    p50: Option<Duration>,
    p99: Option<Duration>,
    /// Fraction of the fixed-rate datagrams that did not arrive.
    loss: f64,
    /// Datagrams cut or misrouted, and what qlb counted, if anything.
    problems: String,
}

/// A case: a datagram size and a number of client flows.
#[derive(Clone, Copy, Debug)]
struct Case {
    size: usize,
    flows: usize,
}

fn main() -> BenchResult {
    let settings = Settings::from_env()?;
    let epoch = Instant::now();
    let _steering = match (settings.rps, settings.forwarder_cpu) {
        (false, _) => None,
        (true, Some(cpu)) => Some(steering::LoopbackSteering::to_cpu(cpu)?),
        (true, None) => return Err("LB_BENCH_RPS needs CPU pinning (2 or more CPUs)".into()),
    };
    describe_machine(&settings);
    // The CID length, from the configuration's QUIC-LB table (no backends needed).
    let cid_len = forwarders::qlb_config(&[], false)?
        .cluster
        .quic_lb
        .first()
        .map(quic_lb::Config::cid_len)
        .ok_or("no QUIC-LB table")?;

    let cases: Vec<Case> = settings
        .sizes
        .iter()
        .flat_map(|&size| {
            settings
                .flows
                .iter()
                .map(move |&flows| Case { size, flows })
        })
        .collect();
    // results[case][contender][round]
    let mut results = vec![vec![Vec::new(); settings.only.len()]; cases.len()];
    for round in 0..settings.rounds {
        for (case_index, case) in cases.iter().enumerate() {
            let layout = Layout {
                size: case.size,
                cid_len,
            };
            let load_cpu = settings.load_cpu;
            let sinks = Sinks::start(BACKENDS, layout, epoch, move || {
                pin_current(load_cpu);
            })?;
            let configs = Configs {
                proxy: forwarders::qlb_config(sinks.addrs(), false)?,
                gue: forwarders::qlb_config(sinks.addrs(), true)?,
            };
            // Both modes' backends have the same server IDs.
            let mut encoders = forwarders::encoders(&configs.proxy)?;
            let count = settings.only.len();
            for turn in 0..count {
                let slot = (turn + round) % count;
                let Some(&contender) = settings.only.get(slot) else {
                    continue;
                };
                let measured = measure(
                    contender,
                    *case,
                    &settings,
                    &sinks,
                    &configs,
                    &mut encoders,
                    epoch,
                )?;
                eprintln!(
                    "round {} {:>5} B {:>3} flows {:<24} {:>10.0} pps (offered {:>9.0}) cpu {:>5} p50 {:>8} p99 {:>8}{}",
                    round + 1,
                    case.size,
                    case.flows,
                    contender.label(),
                    measured.forwarded,
                    measured.offered,
                    measured
                        .cpu_share
                        .map_or("-".into(), |s| format!("{:.0}%", s * 100.0)),
                    micros(measured.p50),
                    micros(measured.p99),
                    measured.problems,
                );
                if let Some(slot) = results.get_mut(case_index).and_then(|r| r.get_mut(slot)) {
                    slot.push(measured);
                }
            }
            sinks.stop()?;
        }
    }
    for (case, per_contender) in cases.iter().zip(&results) {
        report(*case, &settings, per_contender);
    }
    describe_load();
    Ok(())
}

/// Runs `contender` through one case: saturation, then latency at the fixed rate.
fn measure(
    contender: Contender,
    case: Case,
    settings: &Settings,
    sinks: &Sinks,
    configs: &Configs,
    encoders: &mut [Encoder],
    epoch: Instant,
) -> BenchResult<Measurement> {
    let layout = Layout {
        size: case.size,
        cid_len: encoders.first().map_or(0, Encoder::cid_len),
    };
    let running = contender.start(sinks.addrs(), configs, settings.forwarder_cpu)?;
    let outcome = (|| {
        let mut flows = (0..case.flows)
            .map(|flow| {
                let backend = flow % BACKENDS;
                let cid = encoders.get_mut(backend).ok_or("encoder")?.generate();
                let to = running
                    .destination(sinks.addrs(), backend)
                    .ok_or("no destination")?;
                Ok(ClientFlow::open(
                    to,
                    layout.datagram(&cid, backend),
                    settings.burst,
                )?)
            })
            .collect::<BenchResult<Vec<_>>>()?;
        wait_until_forwarding(&flows, sinks)?;
        let worker = running.worker();
        let before = sinks.tally();
        let load = Load {
            settings,
            sinks,
            layout,
            epoch,
            worker,
        };
        let saturated = load.phase(&mut flows, Pace::FlatOut, settings.window, false)?;
        let paced = load.phase(&mut flows, Pace::Rate(settings.rate), LATENCY_WINDOW, true)?;
        let after = sinks.tally();
        let mut problems = String::new();
        if after.malformed > before.malformed {
            problems.push_str(&format!(
                " malformed={}",
                after.malformed - before.malformed
            ));
        }
        if contender.routes_by_cid() && after.misrouted > before.misrouted {
            problems.push_str(&format!(
                " misrouted={}",
                after.misrouted - before.misrouted
            ));
        }
        let percentile = |p: usize| {
            let index =
                (paced.latencies.len() * p / 100).min(paced.latencies.len().saturating_sub(1));
            paced
                .latencies
                .get(index)
                .map(|&ns| Duration::from_nanos(ns))
        };
        Ok(Measurement {
            forwarded: saturated.received_rate(),
            offered: saturated.sent_rate(),
            cpu_share: saturated.cpu_share(),
            cpu_per_datagram: saturated.cpu_per_datagram(),
            p50: percentile(50),
            p99: percentile(99),
            loss: paced.loss(),
            problems,
        })
    })();
    let notes = running.stop()?;
    outcome.map(|mut measured: Measurement| {
        measured.problems.push_str(&notes);
        measured
    })
}

/// Sends each flow's datagram until the sinks have one from every flow: nginx has its
/// sessions, qlb its flows, and the path is warm.
fn wait_until_forwarding(flows: &[ClientFlow], sinks: &Sinks) -> BenchResult {
    let start = sinks.tally().received;
    let deadline = Instant::now() + READY_WAIT;
    while sinks.tally().received < start + flows.len() as u64 {
        if Instant::now() > deadline {
            return Err("the contender forwarded nothing within 10 s".into());
        }
        for flow in flows {
            flow.send();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// What a phase of load runs with.
struct Load<'a> {
    settings: &'a Settings,
    sinks: &'a Sinks,
    layout: Layout,
    epoch: Instant,
    worker: Option<Task>,
}

/// One phase's counts over its measuring window.
struct Phase {
    elapsed: Duration,
    sent: u64,
    received: u64,
    cpu: Option<Duration>,
    latencies: Vec<u64>,
}

impl Phase {
    fn received_rate(&self) -> f64 {
        self.received as f64 / self.elapsed.as_secs_f64()
    }

    fn sent_rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_share(&self) -> Option<f64> {
        Some(self.cpu?.as_secs_f64() / self.elapsed.as_secs_f64())
    }

    fn cpu_per_datagram(&self) -> Option<Duration> {
        let datagrams = u32::try_from(self.received).ok().filter(|n| *n > 0)?;
        Some(self.cpu? / datagrams)
    }

    fn loss(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        self.sent.saturating_sub(self.received) as f64 / self.sent as f64
    }
}

impl Load<'_> {
    /// Runs the generator with `pace`, waits [`WARM_UP`], then counts for `window`
    /// (recording latencies if `record`).
    fn phase(
        &self,
        flows: &mut [ClientFlow],
        pace: Pace,
        window: Duration,
        record: bool,
    ) -> BenchResult<Phase> {
        let stop = AtomicBool::new(false);
        let sent = AtomicU64::new(0);
        let cpu = || self.worker.and_then(|w| w.cpu_time().ok());
        // At saturation the sinks stop reading (they would take CPU from the generator) and
        // the kernel's count of what reached them is read instead.
        let saturating = matches!(pace, Pace::FlatOut);
        let arrived = || -> BenchResult<u64> {
            if saturating {
                self.sinks.arrived()
            } else {
                Ok(self.sinks.tally().received)
            }
        };
        self.sinks.pause(saturating);
        let outcome = std::thread::scope(|scope| {
            let generator = scope.spawn(|| {
                pin_current(self.settings.load_cpu);
                traffic::generate(flows, pace, self.layout, self.epoch, &sent, &stop);
            });
            std::thread::sleep(WARM_UP);
            if record {
                self.sinks.record();
            }
            let (start, arrived_before, sent_before, cpu_before) = (
                Instant::now(),
                arrived(),
                sent.load(Ordering::Relaxed),
                cpu(),
            );
            std::thread::sleep(window);
            let (end, arrived_after, sent_after, cpu_after) = (
                Instant::now(),
                arrived(),
                sent.load(Ordering::Relaxed),
                cpu(),
            );
            let latencies = if record {
                self.sinks.recorded()
            } else {
                Vec::new()
            };
            stop.store(true, Ordering::Relaxed);
            generator.join().map_err(|_| "the generator panicked")?;
            Ok(Phase {
                elapsed: end - start,
                sent: sent_after - sent_before,
                received: arrived_after?.saturating_sub(arrived_before?),
                cpu: cpu_after.zip(cpu_before).map(|(a, b)| a.saturating_sub(b)),
                latencies,
            })
        });
        self.sinks.pause(false);
        outcome
    }
}

/// Pins the calling thread; a failure to pin is reported, not fatal.
fn pin_current(cpu: Option<usize>) {
    if let Err(error) = Task::current().map_err(Into::into).and_then(|t| t.pin(cpu)) {
        eprintln!("warning: cannot pin a thread to CPU {cpu:?}: {error}");
    }
}

fn micros(duration: Option<Duration>) -> String {
    duration.map_or("-".into(), |d| format!("{:.1}us", d.as_secs_f64() * 1e6))
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// The median of `values` and their range, formatted by `format`.
fn spread(values: &[f64], format: fn(f64) -> String) -> String {
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    match median(values.to_vec()) {
        Some(median) if values.len() > 1 => {
            format!("{} [{}-{}]", format(median), format(min), format(max))
        }
        Some(median) => format(median),
        None => "-".into(),
    }
}

fn whole(value: f64) -> String {
    format!("{value:.0}")
}

fn percent(value: f64) -> String {
    format!("{value:.0}%")
}

fn ratio(value: f64) -> String {
    format!("{value:.2}x")
}

/// Prints one case's table: medians over rounds with their range, then qlb's ratios, each
/// computed within a round and summarised the same way.
fn report(case: Case, settings: &Settings, per_contender: &[Vec<Measurement>]) {
    println!();
    println!(
        "## {} octets, {} flow{}, {BACKENDS} backends; latency at {} datagrams/s ({} round{})",
        case.size,
        case.flows,
        if case.flows == 1 { "" } else { "s" },
        settings.rate,
        settings.rounds,
        if settings.rounds == 1 { "" } else { "s" },
    );
    println!();
    println!(
        "| contender | forwarded pps | offered pps | forwarder CPU | CPU ns/datagram | p50 | p99 | loss at rate |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let column = |runs: &[Measurement],
                  f: &dyn Fn(&Measurement) -> Option<f64>,
                  format: fn(f64) -> String| {
        let values: Vec<f64> = runs.iter().filter_map(f).collect();
        spread(&values, format)
    };
    for (contender, runs) in settings.only.iter().zip(per_contender) {
        let p = |f: fn(&Measurement) -> Option<Duration>| {
            median(runs.iter().filter_map(f).map(|d| d.as_secs_f64()).collect())
                .map(Duration::from_secs_f64)
        };
        let loss = median(runs.iter().map(|m| m.loss).collect()).unwrap_or(0.0);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.2}% |",
            contender.label(),
            column(runs, &|m| Some(m.forwarded), whole),
            column(runs, &|m| Some(m.offered), whole),
            column(runs, &|m| m.cpu_share.map(|s| s * 100.0), percent),
            column(
                runs,
                &|m| m.cpu_per_datagram.map(|d| d.as_secs_f64() * 1e9),
                whole
            ),
            micros(p(|m| m.p50)),
            micros(p(|m| m.p99)),
            loss * 100.0,
        );
    }
    let runs_of = |wanted: Contender| {
        settings
            .only
            .iter()
            .position(|c| *c == wanted)
            .and_then(|i| per_contender.get(i))
    };
    let problems: Vec<String> = settings
        .only
        .iter()
        .zip(per_contender)
        .flat_map(|(c, runs)| {
            runs.iter()
                .filter(|m| !m.problems.is_empty())
                .map(move |m| format!("{}:{}", c.key(), m.problems))
        })
        .collect();
    // qlb's ratios against the others, with the goals of issues 4 (proxy mode) and 13 (GUE).
    let comparisons = [
        (Contender::Qlb, Contender::Raw, Some(0.85)),
        (Contender::Qlb, Contender::Nginx, Some(1.3)),
        (Contender::QlbGue, Contender::Raw, None),
        (Contender::QlbGue, Contender::Nginx, Some(1.5)),
        (Contender::QlbGue, Contender::Qlb, None),
    ];
    for (subject, other, target) in comparisons {
        let (Some(runs), Some(base)) = (runs_of(subject), runs_of(other)) else {
            continue;
        };
        let ratios: Vec<f64> = runs
            .iter()
            .zip(base)
            .map(|(q, b)| q.forwarded / b.forwarded)
            .collect();
        let cpu_ratios: Vec<f64> = runs
            .iter()
            .zip(base)
            .filter_map(|(q, b)| {
                Some(b.cpu_per_datagram?.as_secs_f64() / q.cpu_per_datagram?.as_secs_f64())
            })
            .collect();
        let p99_ratio = match (p99_of(runs), p99_of(base)) {
            (Some(q), Some(b)) => format!("{:.2}", q.as_secs_f64() / b.as_secs_f64()),
            _ => "-".into(),
        };
        let target = target.map_or(String::new(), |t| format!(" (target >= {t})"));
        println!();
        println!(
            "{}/{}: pps {}{target}; per CPU-second {}; p99 at the fixed rate {p99_ratio}",
            subject.key(),
            other.key(),
            spread(&ratios, ratio),
            spread(&cpu_ratios, ratio),
        );
    }
    if !problems.is_empty() {
        println!();
        println!("problems: {}", problems.join("; "));
    }
}

/// The median p99 latency of `runs`.
fn p99_of(runs: &[Measurement]) -> Option<Duration> {
    median(
        runs.iter()
            .filter_map(|m| m.p99)
            .map(|d| d.as_secs_f64())
            .collect(),
    )
    .map(Duration::from_secs_f64)
}

fn describe_machine(settings: &Settings) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    println!(
        "# forwarding: {cpus} CPUs ({cpu}), Linux {}, window {:?} x {} rounds, {} datagram(s) per send at saturation, loopback receive work on {}, pinning {}",
        kernel.trim(),
        settings.window,
        settings.rounds,
        settings.burst,
        match settings.rps {
            true => "the forwarder's CPU (RPS)",
            false => "the sender's CPU",
        },
        match (settings.load_cpu, settings.forwarder_cpu) {
            (Some(load), Some(forwarder)) =>
                format!("load on CPU {load}, forwarder on CPU {forwarder}"),
            _ => "off".into(),
        }
    );
    describe_load();
}

fn describe_load() {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("# load average: {}", load.trim());
}
