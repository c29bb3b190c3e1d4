//! ns per datagram of the XDP program under `BPF_PROG_TEST_RUN` (the kernel's own timer
//! around the program), per decision kind and CID mode, beside `qlb-router`'s decision plus
//! `qlb-gue`'s encapsulation for the same datagram in the same run: what userspace spends on
//! the work the program does, before any socket.
//!
//! `cargo bench -p qlb-xdp --bench program` (as root: it loads the program in a network
//! namespace it makes). Results go in docs/PERFORMANCE.md.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use qlb_gue::Ecn;
use qlb_router::{Pool, Router, TableLimits};
use qlb_xdp::{Action, XdpOptions, XdpProgram};
use support::{LB_V4, Lab};

/// Runs per measurement. Each is one `BPF_PROG_TEST_RUN` of one run: the kernel does not
/// restore the frame between repeats, so a repeat would run on the packet the program has
/// already encapsulated.
const REPEAT: u32 = 100_000;
/// Distinct datagrams for the fallback, which a repeat would turn into table hits.
const DISTINCT: usize = 20_000;

const VIP: &str = "192.0.2.80:443";

fn client(n: usize) -> SocketAddr {
    SocketAddr::from((
        [198, 51, (n >> 8) as u8, n as u8],
        40_000 + (n % 20_000) as u16,
    ))
}

fn short_header(cid: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0x41];
    datagram.extend_from_slice(cid);
    datagram.resize(1200, 0x5a);
    datagram
}

fn initial(dcid: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0xc0, 0, 0, 0, 1, dcid.len() as u8];
    datagram.extend_from_slice(dcid);
    datagram.push(0);
    datagram.resize(1200, 0x5a);
    datagram
}

/// The router's ns per decision and encapsulation of `datagram` from `client`.
fn userspace_ns(router: &mut Router, datagrams: &[(SocketAddr, Vec<u8>)], rounds: usize) -> f64 {
    let vip: SocketAddr = VIP.parse().expect("vip");
    let mut out = Vec::with_capacity(1400);
    let start = Instant::now();
    for round in 0..rounds {
        let (client, datagram) = &datagrams[round % datagrams.len()];
        let decision = router.route(black_box(datagram), *client, Instant::now());
        if decision.forward().is_some() {
            out.clear();
            let _ = qlb_gue::encapsulate(&mut out, *client, vip, Ecn::NotEct, datagram);
        }
        black_box(&out);
    }
    start.elapsed().as_nanos() as f64 / rounds as f64
}

/// The program's mean ns over `runs` runs of `frame`, as the kernel times them; the action of
/// the last.
fn xdp_ns(
    program: &XdpProgram,
    frame: &[u8],
    ifindex: u32,
    runs: u32,
) -> Result<(f64, Action), Box<dyn std::error::Error + Send + Sync>> {
    let mut total = Duration::ZERO;
    let mut action = Action::Aborted;
    for _ in 0..runs {
        let outcome = program.test_run(frame, ifindex, 1)?;
        total += outcome.duration;
        action = outcome.action;
    }
    Ok((total.as_nanos() as f64 / f64::from(runs), action))
}

fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    std::thread::spawn(run)
        .join()
        .map_err(|_| "the benchmark thread panicked")?
}

fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let lab = Lab::new("xdpbench", 8)?;
    lab.netns.enter()?;
    let limits = TableLimits {
        capacity: 1 << 18,
        idle_timeout: Duration::from_secs(3600),
    };
    let mut program = XdpProgram::load(XdpOptions {
        gue_source: SocketAddr::new(LB_V4.into(), 6080),
        gue_ports: 8,
        table_limits: limits,
        maglev_capacity: Pool::DEFAULT_MAGLEV_SIZE as u32,
        initials_up: false,
    })?;
    let vip: SocketAddr = VIP.parse()?;
    let pool = support::pool(8, false, &[], true, Pool::DEFAULT_MAGLEV_SIZE);
    program.install(&pool, &[vip])?;
    let pool = Arc::new(pool);
    let mut router = Router::with_limits(pool, limits);

    // One test run of one run costs the kernel's timer around it as well as the program:
    // measured on a frame the program passes unchanged, once per call and then averaged
    // over many runs in one call, the difference is that fixed cost.
    let other = support::frame(client(4), "192.0.2.99:443".parse()?, 0, 0, &[0x40; 64]);
    let (single, action) = xdp_ns(&program, &other, lab.ifindex, REPEAT)?;
    assert_eq!(action, Action::Pass);
    let batched = program
        .test_run(&other, lab.ifindex, REPEAT)?
        .duration
        .as_nanos() as f64;
    let overhead = (single - batched).max(0.0);
    println!(
        "test-run call overhead: {overhead:.0} ns (one run per call {single:.0} ns, \
         {REPEAT} runs per call {batched:.0} ns); subtracted below\n"
    );

    println!("| decision | XDP program, ns | qlb-router + qlb-gue, ns | ratio |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, xdp: f64, user: f64| {
        let xdp = (xdp - overhead).max(1.0);
        println!("| {name} | {xdp:.0} | {user:.0} | {:.2}x |", user / xdp);
    };

    // Routable CIDs of every mode: one datagram, the kernel's average over REPEAT runs.
    for config in support::configs() {
        let cid = support::encoder(&config, 3).generate().to_vec();
        let datagram = short_header(&cid);
        let frame = support::frame(client(1), vip, 0, 0, &datagram);
        let (xdp, action) = xdp_ns(&program, &frame, lab.ifindex, REPEAT)?;
        assert_eq!(action, Action::Tx, "{config:?}");
        let user = userspace_ns(&mut router, &[(client(1), datagram)], REPEAT as usize);
        let name = format!(
            "CID, {:?} ({}+{})",
            config.mode(),
            config.server_id_len(),
            config.nonce_len()
        );
        row(&name, xdp, user);
    }

    // The fallback: distinct client-chosen DCIDs, each decided once.
    let initials: Vec<(SocketAddr, Vec<u8>)> = (0..DISTINCT)
        .map(|n| {
            let dcid: Vec<u8> = (0..8)
                .map(|i| (n >> (i % 4 * 8)) as u8 ^ (i as u8 * 31))
                .collect();
            (client(n), initial(&dcid))
        })
        .collect();
    let mut total = Duration::ZERO;
    for (client, datagram) in &initials {
        let frame = support::frame(*client, vip, 0, 0, datagram);
        total += program.test_run(&frame, lab.ifindex, 1)?.duration;
    }
    let xdp = total.as_nanos() as f64 / DISTINCT as f64;
    let user = userspace_ns(&mut router, &initials, DISTINCT);
    row("Initial, Maglev fallback (each DCID new)", xdp, user);

    // The same Initials again: the DCID table remembers them.
    let (client0, again) = &initials[0];
    let frame = support::frame(*client0, vip, 0, 0, again);
    let (xdp, _) = xdp_ns(&program, &frame, lab.ifindex, REPEAT)?;
    let user = userspace_ns(&mut router, &initials[..1], REPEAT as usize);
    row("Initial, DCID table", xdp, user);

    // A short header of a codepoint without a configuration: the 4-tuple table.
    let unknown = short_header(&[0xc0, 1, 2, 3, 4, 5, 6, 7]);
    let frame = support::frame(client(2), vip, 0, 0, &unknown);
    let (xdp, _) = xdp_ns(&program, &frame, lab.ifindex, REPEAT)?;
    let user = userspace_ns(&mut router, &[(client(2), unknown)], REPEAT as usize);
    row("short header, unknown codepoint: 4-tuple table", xdp, user);

    // A drop: a truncated long header.
    let truncated = vec![0xc0, 0, 0, 0, 1, 8, 1, 2];
    let frame = support::frame(client(3), vip, 0, 0, &truncated);
    let (xdp, action) = xdp_ns(&program, &frame, lab.ifindex, REPEAT)?;
    assert_eq!(action, Action::Drop);
    let user = userspace_ns(&mut router, &[(client(3), truncated)], REPEAT as usize);
    row("drop (truncated)", xdp, user);

    println!("| not for a VIP (XDP_PASS) | {batched:.0} | | |");
    Ok(())
}
