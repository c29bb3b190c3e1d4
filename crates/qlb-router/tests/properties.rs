//! Properties over arbitrary datagrams, addresses, times and pool changes.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use qlb_router::{BackendState, Decision, Pool, Route, Router, TableLimits};
use support::{QUIC_V1, backend, configs, decoder, encoder, long_header, short_header};

const STATES: [BackendState; 3] = [
    BackendState::Active,
    BackendState::Draining,
    BackendState::Down,
];

/// Backends 1..=6 with the given states, in the given order; a small Maglev table keeps the
/// many builds cheap.
fn pool(order: &[u8], states: &[BackendState]) -> Arc<Pool> {
    let backends = order
        .iter()
        .map(|&n| backend(n, states[usize::from(n - 1)]));
    Arc::new(Pool::with_maglev_size(decoder(), backends, 251).expect("valid"))
}

fn states() -> impl Strategy<Value = Vec<BackendState>> {
    proptest::collection::vec(proptest::sample::select(STATES.to_vec()), 6)
}

fn address() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 16]>(), any::<u16>(), any::<bool>()).prop_map(|(ip, port, v4)| {
        if v4 {
            SocketAddr::from(([ip[0], ip[1], ip[2], ip[3]], port))
        } else {
            SocketAddr::from((ip, port))
        }
    })
}

/// Datagrams that reach every path: raw bytes, Initials, short headers of known codepoints.
fn datagram() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (
            proptest::collection::vec(any::<u8>(), 0..21),
            1100usize..1300
        )
            .prop_map(|(dcid, len)| long_header(0xc0, QUIC_V1, &dcid, &[], len)),
        (0u8..8, proptest::collection::vec(any::<u8>(), 20)).prop_map(|(codepoint, dcid)| {
            let mut datagram = short_header(&dcid);
            datagram[1] = (codepoint << 5) | (datagram[1] & 0x1f);
            datagram
        }),
    ]
}

#[derive(Clone, Debug)]
enum Step {
    Route(Vec<u8>, SocketAddr, u64),
    SetPool(Vec<BackendState>),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (datagram(), address(), 0u64..60_000).prop_map(|(d, a, ms)| Step::Route(d, a, ms)),
        1 => states().prop_map(Step::SetPool),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// No panic; forwarding honours backend states; the counters add up to what was decided.
    #[test]
    fn decisions_respect_states_and_counters_add_up(
        initial_states in states(),
        steps in proptest::collection::vec(step(), 1..120),
    ) {
        let limits = TableLimits { capacity: 16, idle_timeout: Duration::from_secs(30) };
        let mut router = Router::with_limits(pool(&[1, 2, 3, 4, 5, 6], &initial_states), limits);
        let t0 = Instant::now();
        let (mut decisions, mut forwarded, mut bytes) = (0u64, 0u64, 0u64);
        for step in steps {
            match step {
                Step::SetPool(states) => router.set_pool(pool(&[1, 2, 3, 4, 5, 6], &states)),
                Step::Route(datagram, client, ms) => {
                    let decision = router.route(&datagram, client, t0 + Duration::from_millis(ms));
                    decisions += 1;
                    if let Decision::Forward(forward) = decision {
                        let chosen = router.pool().backend(forward.backend).expect("in pool");
                        prop_assert_eq!(chosen.address(), forward.address);
                        prop_assert!(chosen.state().serves_existing_connections());
                        if forward.route == Route::Fallback {
                            prop_assert!(chosen.state().takes_new_connections());
                        }
                        forwarded += 1;
                        bytes += datagram.len() as u64;
                    }
                }
            }
        }
        let counters = router.counters();
        prop_assert_eq!(counters.decisions(), decisions);
        let routed: u64 = Route::ALL.iter().map(|&r| counters.routed(r)).sum();
        prop_assert_eq!(routed, forwarded);
        let (packets, octets) = counters
            .backends()
            .fold((0, 0), |(p, b), (_, traffic)| (p + traffic.packets, b + traffic.bytes));
        prop_assert_eq!((packets, octets), (forwarded, bytes));
    }

    /// Every CID a serving backend issues routes to it, in any mode, header and address.
    #[test]
    fn issued_cids_route_to_their_backend(
        states in states(),
        config in 0usize..3,
        n in 1u8..=6,
        appended in 0usize..4,
        long in any::<bool>(),
        client in address(),
    ) {
        let mut router = Router::new(pool(&[1, 2, 3, 4, 5, 6], &states));
        let config = configs()[config].clone();
        let cid = encoder(&config, n).with_appended_octets(appended).expect("fits").generate();
        let datagram = if long {
            long_header(0xe0, QUIC_V1, &cid, &[], 100)
        } else {
            short_header(&cid)
        };
        let decision = router.route(&datagram, client, Instant::now());
        let forward = decision.forward().copied();
        let serving = states[usize::from(n - 1)].serves_existing_connections();
        let to = forward.and_then(|f| router.pool().backend(f.backend)).map(|b| b.name().to_owned());
        if serving {
            prop_assert_eq!(forward.map(|f| f.route), Some(Route::Cid));
            prop_assert_eq!(to, Some(format!("b{n}")));
        } else {
            prop_assert_ne!(forward.map(|f| f.route), Some(Route::Cid));
        }
    }

    /// Two routers over the same backends, listed in different orders, decide alike.
    #[test]
    fn routers_over_one_backend_set_decide_alike(
        states in states(),
        order in Just(vec![1u8, 2, 3, 4, 5, 6]).prop_shuffle(),
        packets in proptest::collection::vec((datagram(), address(), 0u64..60_000), 1..60),
    ) {
        let mut sorted = Router::new(pool(&[1, 2, 3, 4, 5, 6], &states));
        let mut shuffled = Router::new(pool(&order, &states));
        let t0 = Instant::now();
        for (datagram, client, ms) in packets {
            let now = t0 + Duration::from_millis(ms);
            let a = sorted.route(&datagram, client, now);
            let b = shuffled.route(&datagram, client, now);
            prop_assert_eq!(a, b);
        }
    }
}
