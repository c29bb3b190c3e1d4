//! Routing decisions through the public API: the forwarding order, fallback agreement,
//! handshakes across pool changes, drops and counters.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use qlb_router::{
    Backend, BackendState, Decision, DropReason, Forward, HashKey, Pool, Route, Router,
    TableLimits, Traffic,
};
use quic_lb::ConnectionId;
use support::{
    QUIC_V1, backend, client, client_dcid, configs, decoder, encoder, initial, long_header, pool,
    short_header,
};

/// Sends the first Initial of `count` handshakes, client `n` with DCID `n`; returns each DCID
/// with the backend chosen.
fn start_handshakes(router: &mut Router, count: u32, now: Instant) -> Vec<(ConnectionId, String)> {
    (0..count)
        .map(|n| {
            let dcid = client_dcid(n);
            (dcid, decide(router, &initial(&dcid), n, now).0)
        })
        .collect()
}

/// Backends 1..=count, all active but number `n`, which is in `state`.
fn pool_where(count: u8, n: u8, state: BackendState) -> Arc<Pool> {
    let backends = (1..=count).map(|m| {
        let state = if m == n { state } else { BackendState::Active };
        backend(m, state)
    });
    Arc::new(Pool::new(decoder(), backends).expect("valid"))
}

/// A short header under codepoint 3, which has no config: its DCID length is unknown, so the
/// client address stands for the connection. 21 octets, the least such a packet can be.
const UNKNOWN_DCID_LEN: [u8; 21] = [
    0x40, 0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
];

fn router_over(pool: Pool) -> Router {
    Router::new(Arc::new(pool))
}

fn forwarded(router: &mut Router, datagram: &[u8], from: u32, now: Instant) -> Forward {
    match router.route(datagram, client(from), now) {
        Decision::Forward(forward) => forward,
        Decision::Drop(reason) => panic!("dropped: {reason:?}"),
    }
}

fn name_of(router: &Router, forward: &Forward) -> String {
    let backend = router.pool().backend(forward.backend).expect("in pool");
    assert_eq!(backend.address(), forward.address);
    backend.name().to_owned()
}

/// Routes `datagram` and returns the chosen backend's name and the route.
fn decide(router: &mut Router, datagram: &[u8], from: u32, now: Instant) -> (String, Route) {
    let forward = forwarded(router, datagram, from, now);
    (name_of(router, &forward), forward.route)
}

#[test]
fn routable_cids_reach_their_backend_in_every_mode_from_any_address() {
    let mut router = router_over(pool(1..=5));
    let now = Instant::now();
    for config in configs() {
        for n in 1..=5 {
            let cid = encoder(&config, n).generate();
            let expected = (format!("b{n}"), Route::Cid);
            // Short header, from two addresses (a NAT rebinding or a migration).
            for from in [7, 8] {
                assert_eq!(
                    decide(&mut router, &short_header(&cid), from, now),
                    expected
                );
            }
            // Long header (a v1 Handshake), and an unknown version: the same CID routes alike.
            let handshake = long_header(0xe0, QUIC_V1, &cid, &[1; 8], 60);
            assert_eq!(decide(&mut router, &handshake, 9, now), expected);
            let unknown = long_header(0xc0, 0x1a2a_3a4a, &cid, &[], 60);
            assert_eq!(decide(&mut router, &unknown, 9, now), expected);
        }
    }
}

#[test]
fn appended_server_octets_do_not_change_the_route() {
    let mut router = router_over(pool(1..=3));
    let [plaintext, ..] = configs();
    let cid = encoder(&plaintext, 2)
        .with_appended_octets(3)
        .expect("fits")
        .generate();
    assert_eq!(cid.len(), plaintext.cid_len() + 3);
    let handshake = long_header(0xe0, QUIC_V1, &cid, &[], 60);
    let now = Instant::now();
    assert_eq!(
        decide(&mut router, &handshake, 1, now),
        ("b2".into(), Route::Cid)
    );
    assert_eq!(
        decide(&mut router, &short_header(&cid), 1, now),
        ("b2".into(), Route::Cid)
    );
}

#[test]
fn draining_backends_keep_their_cids_and_down_ones_lose_them() {
    let pool = Pool::new(
        decoder(),
        [
            backend(1, BackendState::Active),
            backend(2, BackendState::Draining),
            backend(3, BackendState::Down),
        ],
    )
    .expect("valid");
    let mut router = router_over(pool);
    let [plaintext, ..] = configs();
    let now = Instant::now();
    let to_draining = short_header(&encoder(&plaintext, 2).generate());
    assert_eq!(
        decide(&mut router, &to_draining, 1, now),
        ("b2".into(), Route::Cid)
    );
    // The down backend's CID and a server ID no backend holds are unroutable: fallback, to
    // the one backend that takes new connections.
    for n in [3, 9] {
        let orphan = short_header(&encoder(&plaintext, n).generate());
        assert_eq!(
            decide(&mut router, &orphan, n.into(), now),
            ("b1".into(), Route::Fallback)
        );
    }
}

#[test]
fn routers_built_from_one_backend_set_agree_in_any_order() {
    let mut forward = router_over(pool([1, 2, 3, 4, 5, 6]));
    let mut shuffled = router_over(pool([4, 6, 1, 5, 3, 2]));
    let now = Instant::now();
    let mut chosen = std::collections::BTreeSet::new();
    for n in 0..300 {
        let datagram = initial(&client_dcid(n));
        let a = decide(&mut forward, &datagram, n, now);
        // Another LB instance sees the same Initial from another address (ECMP, NAT).
        let b = decide(&mut shuffled, &datagram, n + 1000, now);
        assert_eq!(a, b);
        assert_eq!(a.1, Route::Fallback);
        chosen.insert(a.0);
    }
    assert_eq!(chosen.len(), 6, "every backend takes a share");
}

#[test]
fn fallback_choices_are_the_same_in_every_build() {
    // Pinned outcomes, computed by a separate implementation of the hash and Maglev
    // definitions: LB instances running different builds must agree. A change here is a
    // change of the fallback function, and breaks handshakes during a rolling upgrade.
    let mut router = router_over(pool(1..=4));
    let now = Instant::now();
    let names: Vec<String> = (0..8)
        .map(|n| decide(&mut router, &initial(&client_dcid(n)), n, now).0)
        .collect();
    assert_eq!(names, ["b1", "b2", "b1", "b3", "b2", "b1", "b2", "b3"]);
    let by_address: Vec<String> = (100..104)
        .map(|n| decide(&mut router, &UNKNOWN_DCID_LEN, n, now).0)
        .collect();
    assert_eq!(by_address, ["b3", "b4", "b4", "b2"]);
}

#[test]
fn a_keyed_fallback_agrees_across_instances_and_hides_from_clients() {
    let keyed =
        |key: u8, order: [u8; 6]| router_over(pool(order).with_hash_key(HashKey::new([key; 16])));
    let mut one = keyed(1, [1, 2, 3, 4, 5, 6]);
    let mut same_key = keyed(1, [4, 6, 1, 5, 3, 2]);
    let mut other_key = keyed(2, [1, 2, 3, 4, 5, 6]);
    let mut unkeyed = router_over(pool([1, 2, 3, 4, 5, 6]));
    let now = Instant::now();
    let (mut against_other_key, mut against_unkeyed) = (0, 0);
    let mut chosen = std::collections::BTreeSet::new();
    let total: u32 = 600;
    for n in 0..total {
        let datagram = initial(&client_dcid(n));
        let a = decide(&mut one, &datagram, n, now);
        assert_eq!(a, decide(&mut same_key, &datagram, n + 1000, now));
        assert_eq!(a.1, Route::Fallback);
        against_other_key += u32::from(a != decide(&mut other_key, &datagram, n, now));
        against_unkeyed += u32::from(a != decide(&mut unkeyed, &datagram, n, now));
        chosen.insert(a.0);
    }
    assert_eq!(chosen.len(), 6, "every backend takes a share");
    // Unrelated choices among 6 backends differ 5 times in 6; ask for well over half.
    for (what, differ) in [
        ("another key", against_other_key),
        ("no key", against_unkeyed),
    ] {
        assert!(
            differ > total * 2 / 3,
            "{what}: only {differ} of {total} differ"
        );
    }
    // Client addresses (short headers without a known DCID length) are keyed too; these
    // addresses are new to every router's tables.
    let by_address = |router: &mut Router| -> Vec<String> {
        (5000..5060)
            .map(|n| decide(router, &UNKNOWN_DCID_LEN, n, now).0)
            .collect()
    };
    assert_eq!(by_address(&mut one), by_address(&mut same_key));
    assert_ne!(by_address(&mut one), by_address(&mut other_key));
}

#[test]
fn handshakes_keep_their_backend_while_backends_come_and_go() {
    let mut router = router_over(pool(1..=5));
    let t0 = Instant::now();
    let handshakes = start_handshakes(&mut router, 400, t0);
    // Mid-handshake: three backends join, b5 leaves.
    router.set_pool(Arc::new(pool([1, 2, 3, 4, 6, 7, 8])));
    let later = t0 + Duration::from_secs(1);
    let mut rerouted = 0;
    for (n, (dcid, first)) in (0..).zip(&handshakes) {
        // A retransmitted Initial and a 0-RTT packet of the same handshake.
        let zero_rtt = long_header(0xd0, QUIC_V1, dcid, &[0xcc; 8], 300);
        for datagram in [initial(dcid), zero_rtt] {
            let (now_at, route) = decide(&mut router, &datagram, n, later);
            if first == "b5" {
                assert_ne!(now_at, "b5");
                rerouted += 1;
            } else {
                assert_eq!((&now_at, route), (first, Route::DcidTable));
            }
        }
    }
    assert!(rerouted > 0, "some handshakes were on the removed backend");
    // Without the table, the new pool would have moved many of them.
    let mut fresh = router_over(pool([1, 2, 3, 4, 6, 7, 8]));
    let moved = (0..)
        .zip(&handshakes)
        .filter(|(n, (dcid, first))| decide(&mut fresh, &initial(dcid), *n, later).0 != *first)
        .count();
    assert!(moved > handshakes.len() / 4, "{moved}");
}

#[test]
fn draining_backends_keep_handshakes_in_progress_but_take_no_new_ones() {
    let mut router = router_over(pool(1..=3));
    let t0 = Instant::now();
    let (dcid, _) = (0..)
        .map(client_dcid)
        .map(|dcid| (dcid, decide(&mut router, &initial(&dcid), 1, t0).0))
        .find(|(_, name)| name == "b2")
        .expect("b2 takes a share");
    router.set_pool(pool_where(3, 2, BackendState::Draining));
    assert_eq!(
        decide(&mut router, &initial(&dcid), 1, t0),
        ("b2".into(), Route::DcidTable)
    );
    for n in 10_000..10_200 {
        assert_ne!(
            decide(&mut router, &initial(&client_dcid(n)), n, t0).0,
            "b2"
        );
    }
}

#[test]
fn entries_of_down_or_removed_backends_are_decided_again() {
    let mut router = router_over(pool(1..=3));
    let t0 = Instant::now();
    let dcids = start_handshakes(&mut router, 60, t0);
    router.set_pool(pool_where(3, 1, BackendState::Down));
    for (n, (dcid, first)) in (0..).zip(&dcids) {
        let (now_at, route) = decide(&mut router, &initial(dcid), n, t0);
        if first == "b1" {
            assert_eq!(route, Route::Fallback);
            assert_ne!(now_at, "b1");
            // The new decision is remembered.
            assert_eq!(
                decide(&mut router, &initial(dcid), n, t0),
                (now_at, Route::DcidTable)
            );
        } else {
            assert_eq!((&now_at, route), (first, Route::DcidTable));
        }
    }
}

#[test]
fn idle_entries_are_forgotten() {
    let limits = TableLimits {
        capacity: 1000,
        idle_timeout: Duration::from_secs(30),
    };
    let mut router = Router::with_limits(Arc::new(pool(1..=4)), limits);
    let t0 = Instant::now();
    let dcid = client_dcid(1);
    let (first, _) = decide(&mut router, &initial(&dcid), 1, t0);
    // Move the Maglev choice elsewhere: only the table keeps the handshake on `first`.
    let number = first.trim_start_matches('b').parse().expect("bN");
    router.set_pool(pool_where(4, number, BackendState::Draining));
    let used = t0 + Duration::from_secs(29);
    assert_eq!(
        decide(&mut router, &initial(&dcid), 1, used),
        (first.clone(), Route::DcidTable)
    );
    // Each use restarts the idle timer; 30 s after the last one the entry is gone.
    let (later, route) = decide(
        &mut router,
        &initial(&dcid),
        1,
        used + Duration::from_secs(30),
    );
    assert_eq!(route, Route::Fallback);
    assert_ne!(later, first);
}

#[test]
fn unroutable_short_headers_use_the_tables_then_the_client_address() {
    let mut router = router_over(pool(1..=4));
    let t0 = Instant::now();
    // A config-failover CID (codepoint 7): the server had no config, so the DCID is
    // unroutable for the whole connection.
    let dcid = client_dcid(42);
    let datagram = short_header(&dcid);
    let (first, route) = decide(&mut router, &datagram, 1, t0);
    assert_eq!(route, Route::Fallback);
    assert_eq!(
        decide(&mut router, &datagram, 1, t0),
        (first.clone(), Route::DcidTable)
    );
    // After a NAT rebinding, the DCID table still knows the connection.
    assert_eq!(
        decide(&mut router, &datagram, 2, t0),
        (first.clone(), Route::DcidTable)
    );
    // A short header whose DCID length is unknown (codepoint 3 has no config), from the
    // first address: the 4-tuple table.
    assert_eq!(
        decide(&mut router, &UNKNOWN_DCID_LEN, 1, t0),
        (first, Route::TupleTable)
    );
    // From an address without an entry: the fallback by address, remembered.
    let (by_address, route) = decide(&mut router, &UNKNOWN_DCID_LEN, 5, t0);
    assert_eq!(route, Route::Fallback);
    assert_eq!(
        decide(&mut router, &UNKNOWN_DCID_LEN, 5, t0),
        (by_address, Route::TupleTable)
    );
}

#[test]
fn initials_skip_the_tuple_table_so_one_client_port_spreads_its_connections() {
    let mut router = router_over(pool(1..=4));
    let t0 = Instant::now();
    let names: std::collections::BTreeSet<String> = (0..40)
        .map(|n| {
            let (name, route) = decide(&mut router, &initial(&client_dcid(n)), 1, t0);
            assert_eq!(route, Route::Fallback);
            name
        })
        .collect();
    assert_eq!(names.len(), 4);
}

#[test]
fn refuses_what_clients_never_send_and_what_cannot_be_parsed() {
    let mut router = router_over(pool(1..=2));
    let now = Instant::now();
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (vec![], DropReason::Empty),
        (vec![0xc0, 0, 0, 0, 1, 8, 1], DropReason::Truncated),
        (
            long_header(0xc0, QUIC_V1, &[0; 21], &[], 1200),
            DropReason::CidTooLong,
        ),
        (
            long_header(0x80, 0, &[1; 8], &[2; 8], 60),
            DropReason::VersionNegotiation,
        ),
        (
            long_header(0xf0, QUIC_V1, &[1; 8], &[2; 8], 60),
            DropReason::Retry,
        ),
        (
            long_header(0xc0, QUIC_V1, &[1; 8], &[2; 8], 1199),
            DropReason::InitialTooSmall,
        ),
        // One octet short of a header-protection sample: 1 + 20 octets when no configuration
        // gives the DCID's length, 1 + DCID + 20 when one does.
        (UNKNOWN_DCID_LEN[..20].to_vec(), DropReason::TooShort),
        (
            short_header(&encoder(&configs()[0], 1).generate())[..1 + configs()[0].cid_len() + 19]
                .to_vec(),
            DropReason::TooShort,
        ),
        (
            long_header(0xe0, QUIC_V1, &[1; 8], &[2; 8], 8 + 16 + 19),
            DropReason::TooShort,
        ),
    ];
    for (datagram, reason) in &cases {
        assert_eq!(
            router.route(datagram, client(1), now),
            Decision::Drop(*reason)
        );
    }
    let counters = router.counters();
    for (_, reason) in &cases {
        let expected = cases.iter().filter(|(_, r)| r == reason).count() as u64;
        assert_eq!(counters.dropped(*reason), expected, "{reason:?}");
    }
    assert_eq!(counters.decisions(), cases.len() as u64);
}

#[test]
fn cid_routed_datagrams_are_counted_by_codepoint_and_merge() {
    let [plaintext, keyed, _] = configs();
    let pool = Arc::new(pool(1..=3));
    let (mut first, mut second) = (Router::new(pool.clone()), Router::new(pool));
    let now = Instant::now();
    for _ in 0..3 {
        forwarded(
            &mut first,
            &short_header(&encoder(&plaintext, 1).generate()),
            1,
            now,
        );
    }
    forwarded(
        &mut second,
        &short_header(&encoder(&plaintext, 2).generate()),
        2,
        now,
    );
    forwarded(
        &mut second,
        &short_header(&encoder(&keyed, 3).generate()),
        3,
        now,
    );
    // Not CID-routed: counted by route, under no codepoint.
    forwarded(&mut second, &initial(&client_dcid(1)), 4, now);

    let mut total = first.counters();
    total.merge(&second.counters());
    let by_codepoint: Vec<u64> = (0..7)
        .map(|id| total.routed_by_codepoint(quic_lb::ConfigId::new(id).expect("id")))
        .collect();
    assert_eq!(by_codepoint, [4, 1, 0, 0, 0, 0, 0]);
    assert_eq!(total.routed(Route::Cid), 5);
}

#[test]
fn an_empty_pool_drops_what_it_cannot_route_with_a_reason() {
    let mut router = router_over(Pool::new(decoder(), []).expect("empty is valid"));
    let now = Instant::now();
    let decision = router.route(&initial(&client_dcid(1)), client(1), now);
    assert_eq!(decision, Decision::Drop(DropReason::NoBackend));
    // Routable-looking CIDs of no backend are unroutable too.
    let [plaintext, ..] = configs();
    let decision = router.route(
        &short_header(&encoder(&plaintext, 1).generate()),
        client(1),
        now,
    );
    assert_eq!(decision, Decision::Drop(DropReason::NoBackend));
    assert_eq!(router.counters().dropped(DropReason::NoBackend), 2);
}

#[test]
fn unknown_versions_fall_back_by_their_long_dcid() {
    let mut router = router_over(pool(1..=4));
    let now = Instant::now();
    let dcid = [0xe1; 200];
    let probe = long_header(0xca, 0x1a2a_3a4a, &dcid, &[], 1200);
    let (first, route) = decide(&mut router, &probe, 1, now);
    assert_eq!(route, Route::Fallback);
    // Too long for the DCID table; another address reaches the same backend by its hash.
    let mut other = router_over(pool(1..=4));
    assert_eq!(decide(&mut other, &probe, 2, now), (first, Route::Fallback));
}

#[test]
fn counters_add_up_and_survive_pool_swaps() {
    let mut router = router_over(pool(1..=2));
    let [plaintext, ..] = configs();
    let now = Instant::now();
    let to_b1 = short_header(&encoder(&plaintext, 1).generate());
    // Only the counters matter here, not the decisions.
    let _ = router.route(&to_b1, client(1), now);
    let _ = router.route(&to_b1, client(1), now);
    router.set_pool(Arc::new(pool([2, 3])));
    // b1 is gone: its CID now falls back.
    let _ = router.route(&to_b1, client(1), now);
    let _ = router.route(&[], client(1), now);
    let counters = router.counters();
    let len = to_b1.len() as u64;
    let traffic: Vec<(&str, Traffic)> = counters.backends().collect();
    assert_eq!(
        traffic[0],
        (
            "b1",
            Traffic {
                packets: 2,
                bytes: 2 * len
            }
        )
    );
    assert_eq!(traffic.len(), 2);
    assert_eq!(
        traffic[1].1,
        Traffic {
            packets: 1,
            bytes: len
        }
    );
    assert_eq!(counters.routed(Route::Cid), 2);
    assert_eq!(counters.routed(Route::Fallback), 1);
    assert_eq!(counters.dropped(DropReason::Empty), 1);
    assert_eq!(counters.decisions(), 4);

    let mut total = counters.clone();
    total.merge(&counters);
    assert_eq!(total.decisions(), 8);
    assert_eq!(
        total.backends().next(),
        Some((
            "b1",
            Traffic {
                packets: 4,
                bytes: 4 * len
            }
        ))
    );
}

#[test]
fn a_weighted_backend_takes_its_share_of_new_connections() {
    let heavy = backend(1, BackendState::Active).with_weight(3);
    let pool = Pool::new(decoder(), [heavy, backend(2, BackendState::Active)]).expect("valid");
    let mut router = router_over(pool);
    let now = Instant::now();
    let to_heavy = (0..4000)
        .filter(|&n| decide(&mut router, &initial(&client_dcid(n)), n, now).0 == "b1")
        .count();
    assert!((2800..3200).contains(&to_heavy), "{to_heavy}");
}

#[test]
fn backend_without_server_ids_is_reached_by_fallback_only() {
    let plain = Backend::new("plain", "10.0.0.9:4433".parse().expect("address"));
    let mut router = router_over(Pool::new(decoder(), [plain]).expect("valid"));
    let (name, route) = decide(&mut router, &initial(&client_dcid(1)), 1, Instant::now());
    assert_eq!((name.as_str(), route), ("plain", Route::Fallback));
}

#[test]
fn pools_are_shared_across_workers_and_routers_move_to_them() {
    fn shared_across_threads<T: Send + Sync>() {}
    fn moved_to_a_thread<T: Send>() {}
    shared_across_threads::<Pool>();
    moved_to_a_thread::<Router>();
    let pool = Arc::new(pool(1..=2));
    let worker = {
        let pool = Arc::clone(&pool);
        std::thread::spawn(move || {
            let mut router = Router::new(pool);
            router.route(&initial(&client_dcid(1)), client(1), Instant::now())
        })
    };
    let decision = worker.join().expect("worker");
    assert_eq!(
        decision,
        router_over((*pool).clone()).route(&initial(&client_dcid(1)), client(1), Instant::now())
    );
}
