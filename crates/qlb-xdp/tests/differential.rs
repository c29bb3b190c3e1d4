//! The differential test of issue 16: generated datagrams (every header form, every CID mode,
//! unroutable and failover CIDs, truncations, garbage) through the loaded XDP program with
//! `BPF_PROG_TEST_RUN`, and through `qlb-router` and `qlb-gue` with the same pool: the same
//! decision and the same encapsulated octets for every one, and the same counters at the end.
//! Then the pool changes (a backend drained, one down, one added): what the flow tables
//! remember decides alike too.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use qlb_gue::Ecn;
use qlb_router::{BackendState, Decision, DropReason, Pool, Route, Router, TableLimits};
use qlb_testkit::TestResult;
use qlb_xdp::{Action, Counter, XdpOptions, XdpProgram};
use rand::rngs::SmallRng;
use rand::{Rng, RngExt, SeedableRng};
use support::{LB_V4, LB_V6, Lab, NEXT_HOP_MAC};

/// Datagrams per run, over both phases.
const DATAGRAMS: usize = 1_000_000;
const BACKENDS: u8 = 8;
const GUE_PORT: u16 = 6080;
const GUE_PORTS: u16 = 8;
/// Large enough that neither side's flow tables evict: they then hold the same entries.
const TABLE_CAPACITY: usize = 1 << 18;
/// Distinct client-chosen DCIDs and client addresses the generator draws from, so that the
/// tables see the same flows again.
const DCIDS: usize = 20_000;
const CLIENTS: usize = 4_000;

const VIP_V4: &str = "192.0.2.80:443";
const VIP_V6: &str = "[2001:db8::80]:443";

fn limits() -> TableLimits {
    TableLimits {
        capacity: TABLE_CAPACITY,
        idle_timeout: Duration::from_secs(3600),
    }
}

/// What the generator draws from.
struct Generator {
    rng: SmallRng,
    encoders: Vec<Vec<quic_lb::Encoder>>,
    configs: Vec<quic_lb::Config>,
    dcids: Vec<Vec<u8>>,
    clients: Vec<SocketAddr>,
}

impl Generator {
    fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let configs = support::configs();
        // Backend 8 joins in the second phase; its CIDs exist from the start.
        let encoders = configs
            .iter()
            .map(|config| {
                (0..=BACKENDS)
                    .map(|n| support::encoder(config, n))
                    .collect()
            })
            .collect();
        let dcids = (0..DCIDS)
            .map(|_| {
                let len = rng.random_range(0..=20);
                let mut dcid = vec![0u8; len];
                rng.fill_bytes(&mut dcid);
                dcid
            })
            .collect();
        let clients = (0..CLIENTS)
            .map(|n| {
                let port = rng.random_range(1024..=65535);
                match n % 3 {
                    0 => SocketAddr::new(
                        IpAddr::from([0x2001, 0xdb8, 7, 0, 0, 0, rng.random(), rng.random()]),
                        port,
                    ),
                    _ => SocketAddr::new(IpAddr::from([198, 51, rng.random(), rng.random()]), port),
                }
            })
            .collect();
        Self {
            rng,
            encoders,
            configs,
            dcids,
            clients,
        }
    }

    /// A CID a backend's server would issue, under any configuration.
    fn routable_cid(&mut self) -> Vec<u8> {
        let config = self.rng.random_range(0..self.encoders.len());
        let backend = self.rng.random_range(0..=usize::from(BACKENDS));
        self.encoders[config][backend].generate().to_vec()
    }

    /// A DCID for a short header: routable, unroutable under a known codepoint, failover
    /// (codepoint 7, self-encoded length), or of an absent configuration.
    fn short_dcid(&mut self) -> Vec<u8> {
        match self.rng.random_range(0..10) {
            0..=5 => self.routable_cid(),
            6 | 7 => {
                let config = &self.configs[self.rng.random_range(0..self.configs.len())];
                let mut cid = vec![0u8; config.cid_len()];
                self.rng.fill_bytes(&mut cid);
                cid[0] = (config.id().get() << 5) | (cid[0] & 0x1f);
                cid
            }
            8 => {
                let len = self.rng.random_range(1..=24);
                let mut cid = vec![0u8; len];
                self.rng.fill_bytes(&mut cid);
                cid[0] = 0xe0 | ((len as u8 - 1) & 0x1f);
                cid
            }
            _ => {
                let mut cid = vec![0u8; self.rng.random_range(1..=20)];
                self.rng.fill_bytes(&mut cid);
                cid[0] = (6 << 5) | (cid[0] & 0x1f);
                cid
            }
        }
    }

    fn padding(&mut self, datagram: &mut Vec<u8>, len: usize) {
        let at = datagram.len();
        datagram.resize(len.max(at), 0);
        self.rng.fill_bytes(&mut datagram[at..]);
    }

    /// One datagram's payload.
    fn datagram(&mut self) -> Vec<u8> {
        let mut datagram = Vec::new();
        match self.rng.random_range(0..100) {
            // Short headers, most of the traffic.
            0..=44 => {
                datagram.push(0x40 | (self.rng.random::<u8>() & 0x3f));
                let dcid = self.short_dcid();
                datagram.extend(&dcid);
                let len = self.rng.random_range(datagram.len()..datagram.len() + 60);
                self.padding(&mut datagram, len);
            }
            // Long headers of v1, v2 and unknown versions, every type.
            45..=84 => {
                let version: u32 = match self.rng.random_range(0..10) {
                    0..=5 => 1,
                    6..=7 => 0x6b33_43cf,
                    8 => 0,
                    _ => self.rng.random(),
                };
                datagram.push(0xc0 | (self.rng.random::<u8>() & 0x3f));
                datagram.extend(version.to_be_bytes());
                let dcid = match self.rng.random_range(0..10) {
                    0..=3 => self.routable_cid(),
                    4..=8 => self.dcids[self.rng.random_range(0..DCIDS)].clone(),
                    _ => {
                        let mut long = vec![0u8; self.rng.random_range(21..=40)];
                        self.rng.fill_bytes(&mut long);
                        long
                    }
                };
                datagram.push(dcid.len() as u8);
                datagram.extend(&dcid);
                let scid_len = match self.rng.random_range(0..20) {
                    0 => self.rng.random_range(21..=30),
                    _ => self.rng.random_range(0..=20),
                };
                datagram.push(scid_len);
                let len = match self.rng.random_range(0..4) {
                    0 => self.rng.random_range(datagram.len()..datagram.len() + 80),
                    _ => self.rng.random_range(1150..1350),
                };
                self.padding(&mut datagram, len);
            }
            // Truncations of either form.
            85..=94 => {
                let mut whole = self.datagram();
                let keep = self.rng.random_range(0..=whole.len().min(40));
                whole.truncate(keep);
                datagram = whole;
            }
            // Garbage.
            _ => {
                let len = self.rng.random_range(0..300);
                self.padding(&mut datagram, len);
            }
        }
        datagram
    }

    fn client(&mut self, v6: bool) -> SocketAddr {
        loop {
            let client = self.clients[self.rng.random_range(0..CLIENTS)];
            if client.is_ipv6() == v6 {
                return client;
            }
        }
    }
}

/// The router's decision for a datagram, as the program should make it: dropped (and why),
/// passed up, or the encapsulated packet's backend.
fn expected(routers: &mut [Router; 2], datagram: &[u8], client: SocketAddr) -> (Decision, bool) {
    let router = &mut routers[usize::from(client.is_ipv6())];
    // The program passes up long headers whose DCID it cannot key (over 20 octets): the
    // router must not see those, or its tables would differ.
    let long_dcid = datagram.first().is_some_and(|first| first & 0x80 != 0)
        && datagram.len() >= 6
        && datagram[5] > 20
        && datagram.len() >= 6 + usize::from(datagram[5])
        && {
            let version = u32::from_be_bytes([datagram[1], datagram[2], datagram[3], datagram[4]]);
            version != 1 && version != 0x6b33_43cf
        };
    if long_dcid {
        return (Decision::Drop(DropReason::Empty), true);
    }
    (router.route(datagram, client, Instant::now()), false)
}

fn check_forwarded(
    outcome: &qlb_xdp::TestOutcome,
    lab: &Lab,
    backend: SocketAddr,
    client: SocketAddr,
    vip: SocketAddr,
    ecn: u8,
    datagram: &[u8],
) -> Result<(), String> {
    let frame = &outcome.frame;
    let mut inner = Vec::new();
    qlb_gue::encapsulate(&mut inner, client, vip, Ecn::from_tos(ecn), datagram)
        .map_err(|error| error.to_string())?;
    let (outer_ip_len, source) = match backend.ip() {
        IpAddr::V4(_) => (20, IpAddr::V4(LB_V4)),
        IpAddr::V6(_) => (40, IpAddr::V6(LB_V6)),
    };
    let expected_len = 14 + outer_ip_len + 8 + inner.len();
    if frame.len() < expected_len {
        return Err(format!(
            "frame of {} octets, {expected_len} expected",
            frame.len()
        ));
    }
    if frame[..6] != NEXT_HOP_MAC || frame[6..12] != lab.mac {
        return Err(format!("Ethernet addresses {:02x?}", &frame[..12]));
    }
    let ip = &frame[14..14 + outer_ip_len];
    let (ip_source, ip_destination, ip_ecn) = match backend.ip() {
        IpAddr::V4(_) => {
            if frame[12..14] != [0x08, 0x00] || ip[0] != 0x45 || ip[8] != 64 || ip[9] != 17 {
                return Err(format!("outer IPv4 header {ip:02x?}"));
            }
            if support::ones_sum(ip) != 0xffff {
                return Err("outer IPv4 header checksum".into());
            }
            let total = u16::from_be_bytes([ip[2], ip[3]]) as usize;
            if total != expected_len - 14 {
                return Err(format!("outer IPv4 total length {total}"));
            }
            (
                IpAddr::from([ip[12], ip[13], ip[14], ip[15]]),
                IpAddr::from([ip[16], ip[17], ip[18], ip[19]]),
                ip[1],
            )
        }
        IpAddr::V6(_) => {
            let mut src = [0u8; 16];
            let mut dst = [0u8; 16];
            src.copy_from_slice(&ip[8..24]);
            dst.copy_from_slice(&ip[24..40]);
            if frame[12..14] != [0x86, 0xdd] || ip[0] != 0x60 || ip[6] != 17 || ip[7] != 64 {
                return Err(format!("outer IPv6 header {ip:02x?}"));
            }
            (IpAddr::from(src), IpAddr::from(dst), ip[1] >> 4)
        }
    };
    if (ip_source, ip_destination, ip_ecn) != (source, backend.ip(), ecn) {
        return Err(format!(
            "outer addresses {ip_source} -> {ip_destination}, ECN {ip_ecn}"
        ));
    }
    let udp = &frame[14 + outer_ip_len..expected_len];
    let port = GUE_PORT + qlb_gue::source_port_index(client, usize::from(GUE_PORTS)) as u16;
    if udp[..4] != [port.to_be_bytes(), backend.port().to_be_bytes()].concat()[..] {
        return Err(format!(
            "outer UDP ports {:02x?}, expected from {port}",
            &udp[..4]
        ));
    }
    if !support::udp_checksum_ok(source, backend.ip(), udp) {
        return Err("outer UDP checksum".into());
    }
    if udp[8..] != inner[..] {
        let at = udp[8..].iter().zip(&inner).position(|(a, b)| a != b);
        return Err(format!(
            "GUE and inner octets differ from qlb-gue's, first at {at:?}"
        ));
    }
    Ok(())
}

/// Runs `count` datagrams through both, and compares.
fn compare(
    program: &XdpProgram,
    routers: &mut [Router; 2],
    generator: &mut Generator,
    lab: &Lab,
    count: usize,
) -> TestResult<usize> {
    let vips: [SocketAddr; 2] = [VIP_V4.parse()?, VIP_V6.parse()?];
    let mut passed = 0;
    for n in 0..count {
        let v6 = generator.rng.random_range(0..3) == 0;
        let client = generator.client(v6);
        let vip = vips[usize::from(v6)];
        let datagram = generator.datagram();
        let ecn = generator.rng.random_range(0..4u8);
        let frame = support::frame(client, vip, ecn, generator.rng.random(), &datagram);
        let outcome = program.test_run(&frame, lab.ifindex, 1)?;
        let (decision, passes) = expected(routers, &datagram, client);
        let verdict = match (&decision, outcome.action, passes) {
            (_, Action::Pass, true) => {
                passed += 1;
                Ok(())
            }
            (Decision::Drop(_), Action::Drop, false) => Ok(()),
            (Decision::Forward(forward), Action::Tx, false) => {
                check_forwarded(&outcome, lab, forward.address, client, vip, ecn, &datagram)
            }
            _ => Err(format!(
                "the program said {:?}; its counters: {:?}",
                outcome.action,
                program.counters()
            )),
        };
        if let Err(why) = verdict {
            return Err(format!(
                "datagram {n} from {client} to {vip}: the router decided {decision:?}; {why}\n\
                 datagram: {}",
                datagram
                    .iter()
                    .map(|o| format!("{o:02x}"))
                    .collect::<String>()
            )
            .into());
        }
    }
    Ok(passed)
}

/// The router's counters and the program's agree on every decision kind.
fn check_counters(program: &XdpProgram, routers: &[Router; 2]) -> TestResult {
    let xdp = program.counters()?;
    let route = |route: Route| -> u64 {
        routers
            .iter()
            .map(|router| router.counters().routed(route))
            .sum()
    };
    let drop = |reason: DropReason| -> u64 {
        routers
            .iter()
            .map(|router| router.counters().dropped(reason))
            .sum()
    };
    let pairs = [
        (Counter::Cid, route(Route::Cid)),
        (Counter::DcidTable, route(Route::DcidTable)),
        (Counter::TupleTable, route(Route::TupleTable)),
        (Counter::Fallback, route(Route::Fallback)),
        (Counter::DropEmpty, drop(DropReason::Empty)),
        (Counter::DropTruncated, drop(DropReason::Truncated)),
        (Counter::DropCidTooLong, drop(DropReason::CidTooLong)),
        (
            Counter::DropVersionNegotiation,
            drop(DropReason::VersionNegotiation),
        ),
        (Counter::DropRetry, drop(DropReason::Retry)),
        (
            Counter::DropInitialTooSmall,
            drop(DropReason::InitialTooSmall),
        ),
        (Counter::DropTooShort, drop(DropReason::TooShort)),
        (Counter::DropNoBackend, drop(DropReason::NoBackend)),
    ];
    for (counter, expected) in pairs {
        assert_eq!(xdp.get(counter), expected, "{counter:?}");
    }
    for codepoint in 0..7u8 {
        let id = quic_lb::ConfigId::new(codepoint)?;
        let expected: u64 = routers
            .iter()
            .map(|router| router.counters().routed_by_codepoint(id))
            .sum();
        assert_eq!(
            xdp.get(Counter::Codepoint(codepoint)),
            expected,
            "codepoint {codepoint}"
        );
    }
    Ok(())
}

fn run(outer_v6: bool, keyed: bool, seed: u64, count: usize) -> TestResult {
    let lab = Lab::new("xdpdiff", BACKENDS + 1)?;
    lab.netns.enter()?;
    let gue_source = match outer_v6 {
        false => SocketAddr::new(IpAddr::V4(LB_V4), GUE_PORT),
        true => SocketAddr::new(IpAddr::V6(LB_V6), GUE_PORT),
    };
    let mut program = XdpProgram::load(XdpOptions {
        gue_source,
        gue_ports: GUE_PORTS,
        table_limits: limits(),
        maglev_capacity: Pool::DEFAULT_MAGLEV_SIZE as u32,
        initials_up: false,
    })?;
    let vips = [VIP_V4.parse()?, VIP_V6.parse()?];
    let first = support::pool(
        BACKENDS,
        outer_v6,
        &[(5, BackendState::Draining), (6, BackendState::Down)],
        keyed,
        Pool::DEFAULT_MAGLEV_SIZE,
    );
    program.install(&first, &vips)?;
    let first = std::sync::Arc::new(first);
    let mut routers = [
        Router::with_limits(first.clone(), limits()),
        Router::with_limits(first, limits()),
    ];
    let mut generator = Generator::new(seed);
    let passed = compare(&program, &mut routers, &mut generator, &lab, count / 2)?;

    // Drained, down, back and one more: the tables' entries decide again where their
    // backend went down, and stay where it drains.
    let second = support::pool(
        BACKENDS + 1,
        outer_v6,
        &[
            (1, BackendState::Draining),
            (2, BackendState::Down),
            (6, BackendState::Active),
        ],
        keyed,
        Pool::DEFAULT_MAGLEV_SIZE,
    );
    program.install(&second, &vips)?;
    let second = std::sync::Arc::new(second);
    for router in &mut routers {
        router.set_pool(second.clone());
    }
    let passed = passed
        + compare(
            &program,
            &mut routers,
            &mut generator,
            &lab,
            count - count / 2,
        )?;
    check_counters(&program, &routers)?;
    let xdp = program.counters()?;
    assert_eq!(xdp.get(Counter::PassLongDcid), passed as u64);
    // Every kind of decision was exercised.
    for counter in [
        Counter::Cid,
        Counter::DcidTable,
        Counter::TupleTable,
        Counter::Fallback,
        Counter::DropTruncated,
        Counter::DropCidTooLong,
        Counter::DropVersionNegotiation,
        Counter::DropRetry,
        Counter::DropInitialTooSmall,
        Counter::DropTooShort,
        Counter::DropEmpty,
        Counter::PassLongDcid,
    ] {
        assert!(xdp.get(counter) > 0, "{counter:?} never happened: {xdp:?}");
    }
    for codepoint in 0..6 {
        assert!(
            xdp.get(Counter::Codepoint(codepoint)) > 0,
            "codepoint {codepoint}"
        );
    }
    Ok(())
}

/// In a thread of its own: it enters the lab's namespace.
fn in_lab(f: impl FnOnce() -> TestResult + Send + 'static) -> TestResult {
    if !qlb_testkit::netns::available() {
        return Ok(());
    }
    std::thread::spawn(f)
        .join()
        .map_err(|_| "the test thread panicked")?
        .map_err(|error| error.to_string().into())
}

#[test]
fn a_million_datagrams_decide_and_encapsulate_as_qlb_router_and_qlb_gue_do() -> TestResult {
    in_lab(|| run(false, true, 16, DATAGRAMS))
}

#[test]
fn over_ipv6_and_an_unkeyed_fallback_hash_too() -> TestResult {
    in_lab(|| run(true, false, 61, DATAGRAMS / 10))
}
