//! The data plane with real UDP sockets on loopback: backends are echoing sinks, clients send
//! QUIC-shaped datagrams (short headers with the backends' QUIC-LB connection IDs, Initials
//! with client-chosen DCIDs), and every test checks what arrived where, byte for byte.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use qlb_lb::dataplane::{
    Dataplane, DataplaneDrop, DataplaneError, DataplaneOptions, FlowEviction, FlowRefusal,
};
use qlb_router::{BackendState, DropReason, Route};
use qlb_testkit::eventually_blocking;
use quinn_udp::EcnCodepoint;
use support::{
    Cluster, Peer, WAIT, client_dcid, fixture, initial, next_ecn, short_header, sorted, start,
};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

#[test]
fn cid_routed_datagrams_reach_their_backend_and_replies_come_from_the_listen_address() {
    let cluster = Cluster::start(3);
    let lb = start(
        &["127.0.0.1:0", "127.0.0.1:0"],
        2,
        cluster.pool(),
        DataplaneOptions::default(),
    );
    let clients: Vec<Peer> = (0..4).map(|_| Peer::client()).collect();
    let mut expected: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    let mut seq = 0;
    for client in &clients {
        for &listen in lb.local_addrs() {
            let mut sent = Vec::new();
            for backend in &cluster.backends {
                for _ in 0..3 {
                    seq += 1;
                    let datagram = short_header(&cluster.cid(&backend.name), seq);
                    expected
                        .entry(backend.name.clone())
                        .or_default()
                        .push(datagram.clone());
                    sent.push(datagram);
                }
            }
            let replies = client.exchange(listen, &sent);
            assert!(
                replies.iter().all(|r| r.from == listen),
                "replies come from the address the client sent to"
            );
            let replied: Vec<Vec<u8>> = replies.into_iter().map(|r| r.data).collect();
            assert_eq!(sorted(replied), sorted(sent));
        }
    }
    let mut upstreams = Vec::new();
    for backend in &cluster.backends {
        let want = &expected[&backend.name];
        let got = backend.wait_for(want.len());
        assert_eq!(
            sorted(got.iter().map(|d| d.data.clone()).collect()),
            sorted(want.clone()),
            "{}",
            backend.name
        );
        upstreams.push(got.iter().map(|d| d.from).collect::<BTreeSet<_>>());
    }
    // A flow is a client, a listening address and a backend: its upstream socket, connected
    // to the backend, is its own.
    assert!(upstreams.iter().all(|u| u.len() == 8));
    let all: BTreeSet<_> = upstreams.iter().flatten().collect();
    assert_eq!(all.len(), 8 * cluster.backends.len());
    let stats = lb.stats();
    assert_eq!(stats.router.routed(Route::Cid), seq);
    for backend in &cluster.backends {
        assert_eq!(stats.to_client(&backend.name).packets, 3 * 4 * 2);
    }
    // One flow per client, listening address and backend.
    assert_eq!((stats.flows_created, stats.flows_active), (24, 24));
    assert!(DataplaneDrop::ALL.iter().all(|d| stats.dropped(*d) == 0));
}

#[test]
fn a_client_that_changes_port_reaches_the_same_backend() {
    let (cluster, _lb, listen) = fixture(3, 2, DataplaneOptions::default());
    let cid = cluster.cid("b2");
    let dcid = client_dcid(1);

    let before = Peer::client();
    before.exchange(listen, &[short_header(&cid, 1), initial(&dcid, 2, 1200)]);
    let initial_backend = cluster
        .backends
        .iter()
        .find(|b| b.payloads().contains(&initial(&dcid, 2, 1200)))
        .map(|b| b.name.clone())
        .expect("the Initial reached a backend");

    // The NAT rebinds: same connection, new client port.
    let after = Peer::client();
    let replies = after.exchange(listen, &[short_header(&cid, 3), initial(&dcid, 4, 1200)]);
    assert_eq!(replies.len(), 2, "replies reach the new port");
    assert!(
        cluster
            .backend("b2")
            .payloads()
            .contains(&short_header(&cid, 3))
    );
    assert!(
        cluster
            .backend(&initial_backend)
            .payloads()
            .contains(&initial(&dcid, 4, 1200)),
        "a retransmitted Initial from the new port finds the same backend"
    );
}

#[test]
fn ecn_codepoints_are_carried_both_ways() {
    let (cluster, _lb, listen) = fixture(1, 1, DataplaneOptions::default());
    let client = Peer::client();
    let cid = cluster.cid("b1");
    let codepoints = [
        None,
        Some(EcnCodepoint::Ect0),
        Some(EcnCodepoint::Ect1),
        Some(EcnCodepoint::Ce),
    ];
    for (seq, ecn) in (0..).zip(codepoints) {
        let datagram = short_header(&cid, seq);
        client.send_batch(listen, &datagram, ecn, None);
        let reply = client.collect(1);
        assert_eq!(reply.len(), 1, "a reply to {ecn:?}");
        assert_eq!(reply[0].data, datagram);
        assert_eq!(reply[0].ecn, ecn.map(next_ecn), "backend to client");
        let received = cluster.backend("b1").wait_for(seq as usize + 1);
        assert_eq!(
            received.last().map(|d| d.ecn),
            Some(ecn),
            "client to backend"
        );
    }
}

#[test]
fn gso_batches_are_split_into_whole_datagrams_and_routed_one_by_one() {
    let (cluster, _lb, listen) = fixture(2, 1, DataplaneOptions::default());
    let client = Peer::client();
    // Six datagrams of 1200 octets but the last: three for b1, two for b2, one for b1.
    let owners = ["b1", "b1", "b1", "b2", "b2", "b1"];
    let datagrams: Vec<Vec<u8>> = owners
        .iter()
        .zip(0..)
        .map(|(owner, seq)| {
            let mut datagram = short_header(&cluster.cid(owner), seq);
            datagram.resize(if seq == 5 { 700 } else { 1200 }, seq as u8);
            datagram
        })
        .collect();
    // With GSO the kernel hands the load balancer the batch whole (GRO), where it supports it.
    if client.max_gso_segments() >= datagrams.len() {
        client.send_batch(listen, &datagrams.concat(), None, Some(1200));
    } else {
        datagrams.iter().for_each(|d| client.send(listen, d));
    }

    let replies = client.collect(datagrams.len());
    assert_eq!(
        sorted(replies.into_iter().map(|r| r.data).collect()),
        sorted(datagrams.clone())
    );
    for name in ["b1", "b2"] {
        let want: Vec<Vec<u8>> = owners
            .iter()
            .zip(&datagrams)
            .filter(|(owner, _)| **owner == name)
            .map(|(_, d)| d.clone())
            .collect();
        let got = cluster.backend(name).wait_for(want.len());
        assert_eq!(
            got.into_iter().map(|d| d.data).collect::<Vec<_>>(),
            want,
            "{name} gets its datagrams whole and in order"
        );
    }
}

#[test]
fn idle_flows_expire_and_are_counted() {
    let options = DataplaneOptions {
        flow_idle_timeout: Duration::from_secs(1),
        ..DataplaneOptions::default()
    };
    let (cluster, lb, listen) = fixture(1, 1, options);
    let client = Peer::client();
    let cid = cluster.cid("b1");
    assert_eq!(client.exchange(listen, &[short_header(&cid, 1)]).len(), 1);

    eventually_blocking(WAIT, "the idle flow expires", || {
        let stats = lb.stats();
        (stats.flows_expired, stats.flows_active) == (1, 0)
    })
    .expect("in time");

    // The client comes back: a new flow, routed by its CID to the same backend.
    assert_eq!(client.exchange(listen, &[short_header(&cid, 2)]).len(), 1);
    assert_eq!(cluster.backend("b1").wait_for(2).len(), 2);
    let stats = lb.stats();
    assert_eq!((stats.flows_created, stats.flows_active), (2, 1));
}

#[test]
fn a_full_flow_table_refuses_new_flows_and_keeps_old_ones() {
    let options = DataplaneOptions {
        max_flows: 2,
        ..DataplaneOptions::default()
    };
    let (cluster, lb, listen) = fixture(1, 1, options);
    let cid = cluster.cid("b1");
    let old: Vec<Peer> = (0..2).map(|_| Peer::client()).collect();
    for (seq, client) in (0..).zip(&old) {
        assert_eq!(client.exchange(listen, &[short_header(&cid, seq)]).len(), 1);
    }

    let refused = Peer::client();
    let refused_datagrams: Vec<Vec<u8>> = (100..103).map(|seq| short_header(&cid, seq)).collect();
    for datagram in &refused_datagrams {
        refused.send(listen, datagram);
    }
    eventually_blocking(WAIT, "three datagrams refused", || {
        lb.stats().dropped(DataplaneDrop::FlowTableFull) == 3
    })
    .expect("in time");

    for (seq, client) in (200..).zip(&old) {
        assert_eq!(
            client.exchange(listen, &[short_header(&cid, seq)]).len(),
            1,
            "an old flow keeps working"
        );
    }
    let payloads = cluster
        .backend("b1")
        .wait_for(4)
        .into_iter()
        .map(|d| d.data);
    assert!(
        payloads
            .into_iter()
            .all(|p| !refused_datagrams.contains(&p))
    );
    let stats = lb.stats();
    assert_eq!((stats.flows_created, stats.flows_active), (2, 2));
    assert!(stats.refused(FlowRefusal::TableFull) >= 1);
    assert_eq!(stats.evicted(FlowEviction::TableFull), 0);
}

#[test]
fn unconfirmed_flows_make_room_oldest_first_and_confirmed_ones_stay() {
    let options = DataplaneOptions {
        max_flows: 4,
        max_unconfirmed_flows: 2,
        ..DataplaneOptions::default()
    };
    let (cluster, lb, listen) = fixture(1, 1, options);
    let cid = cluster.cid("b1");
    let backend = cluster.backend("b1");
    // A real client's flow is confirmed by its backend's answer; a stranger's flow, which the
    // (muted) backend never answers, is not.
    let real = |client: &Peer, seq| {
        backend.mute(false);
        assert_eq!(client.exchange(listen, &[short_header(&cid, seq)]).len(), 1);
    };
    let clients: Vec<Peer> = (0..3).map(|_| Peer::client()).collect();
    real(&clients[0], 1);
    real(&clients[1], 2);
    let strangers: Vec<Peer> = (0..4).map(|_| Peer::client()).collect();
    // Stranger `n`'s datagram, the backend's `total`th.
    let stranger = |n: usize, total: usize| {
        backend.mute(true);
        strangers[n].send(listen, &short_header(&cid, 100 + n as u64));
        assert_eq!(backend.wait_for(total).len(), total);
    };
    stranger(0, 3);
    stranger(1, 4);
    // The unconfirmed class is full: the third stranger evicts the first.
    stranger(2, 5);
    let stats = lb.stats();
    assert_eq!((stats.flows_active, stats.flows_unconfirmed), (4, 2));
    assert_eq!(stats.evicted(FlowEviction::UnconfirmedCap), 1);
    // A third real client evicts the second stranger (the oldest unconfirmed) alike.
    real(&clients[2], 3);
    let stats = lb.stats();
    assert_eq!(stats.evicted(FlowEviction::UnconfirmedCap), 2);
    assert_eq!((stats.flows_active, stats.flows_unconfirmed), (4, 1));
    // The table is full, with room in the unconfirmed class: a stranger evicts the third.
    stranger(3, 7);
    let stats = lb.stats();
    assert_eq!(stats.evicted(FlowEviction::TableFull), 1);
    assert_eq!((stats.flows_active, stats.flows_unconfirmed), (4, 1));
    assert_eq!(stats.refused(FlowRefusal::TableFull), 0);

    // The confirmed flows were never evicted: they still work, on the same flows.
    for (seq, client) in (200..).zip(&clients) {
        real(client, seq);
    }
    let stats = lb.stats();
    assert_eq!((stats.flows_created, stats.flows_confirmed), (3 + 4, 3));
}

#[test]
fn garbage_and_initial_floods_are_dropped_and_counted_while_established_traffic_flows() {
    const ESTABLISHED: u64 = 300;
    const ROUNDS: u64 = 10;
    const BURST: u64 = 16;

    let (cluster, lb, listen) = fixture(3, 2, DataplaneOptions::default());
    let handle = lb.handle();

    std::thread::scope(|scope| {
        let established = scope.spawn(|| {
            let client = Peer::client();
            let names = ["b1", "b2", "b3"];
            let cids: Vec<_> = names.iter().map(|n| cluster.cid(n)).collect();
            let mut answered = 0;
            for seq in 0..ESTABLISHED {
                let datagram = short_header(&cids[seq as usize % cids.len()], seq);
                let replies = client.exchange(listen, [&datagram]);
                if replies.iter().any(|r| r.data == datagram) {
                    answered += 1;
                }
            }
            answered
        });

        // Each attacker socket sends bursts of every kind of bad datagram and of Initials with
        // new DCIDs; each burst is counted before the next goes, so that the kernel has no
        // reason to drop any of them on its own.
        let attackers: Vec<UdpSocket> = (0..4)
            .map(|_| UdpSocket::bind((LOCALHOST, 0)).expect("bind"))
            .collect();
        let mut dcid = 0;
        for round in 0..ROUNDS {
            for attacker in &attackers {
                for _ in 0..BURST {
                    dcid += 1;
                    let too_long_cid = [0xc0, 0, 0, 0, 1, 21];
                    let bad: [&[u8]; 4] = [
                        &[],
                        &[0xc0, 0, 0, 0, 1, 20, 1, 2],
                        &initial(&client_dcid(dcid), dcid, 1199),
                        &too_long_cid,
                    ];
                    for datagram in bad {
                        attacker.send_to(datagram, listen).expect("send");
                    }
                    attacker
                        .send_to(&initial(&client_dcid(dcid), dcid, 1200), listen)
                        .expect("send");
                }
            }
            let per_reason = (round + 1) * BURST * attackers.len() as u64;
            eventually_blocking(WAIT, "a round of bad datagrams counted", || {
                let router = handle.stats().router;
                [
                    DropReason::Empty,
                    DropReason::Truncated,
                    DropReason::InitialTooSmall,
                    DropReason::CidTooLong,
                ]
                .iter()
                .all(|r| router.dropped(*r) == per_reason)
                    && router.routed(Route::Fallback) == per_reason
            })
            .expect("in time");
        }
        assert_eq!(established.join().expect("client"), ESTABLISHED);
    });

    let stats = lb.stats();
    let initials = ROUNDS * BURST * 4;
    assert_eq!(stats.router.routed(Route::Cid), ESTABLISHED);
    let delivered_initials: usize = cluster
        .backends
        .iter()
        .map(|b| {
            b.received()
                .iter()
                .filter(|d| d.data.first() == Some(&0xc0))
                .count()
        })
        .sum();
    assert_eq!(delivered_initials as u64, initials);
    assert!(DataplaneDrop::ALL.iter().all(|d| stats.dropped(*d) == 0));
}

#[test]
fn random_datagrams_never_stop_a_worker() {
    const BURSTS: u64 = 40;
    const BURST: u64 = 50;

    let (cluster, lb, listen) = fixture(2, 1, DataplaneOptions::default());
    let noise = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    let mut state = 0x9e37_79b9_u32;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state
    };
    for burst in 1..=BURSTS {
        for _ in 0..BURST {
            let len = (next() % 1400) as usize;
            let datagram: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            noise.send_to(&datagram, listen).expect("send");
        }
        eventually_blocking(WAIT, "a burst of noise decided", || {
            lb.stats().router.decisions() == burst * BURST
        })
        .expect("in time");
    }
    let client = Peer::client();
    let datagram = short_header(&cluster.cid("b2"), 1);
    assert_eq!(client.exchange(listen, [&datagram]).len(), 1);
    // Shutting down reports a worker that died.
    lb.shutdown().expect("no worker failed");
}

#[test]
fn replies_are_taken_from_backends_only() {
    let (cluster, _lb, listen) = fixture(1, 1, DataplaneOptions::default());
    let client = Peer::client();
    let cid = cluster.cid("b1");
    client.exchange(listen, &[short_header(&cid, 1)]);
    let upstream = cluster.backend("b1").wait_for(1)[0].from;

    // A stranger who learnt the flow's upstream port cannot reach the client through it: the
    // upstream socket is connected to the backend, so the kernel drops what others send.
    let stranger = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    stranger.send_to(b"spoofed", upstream).expect("send");
    let replies = client.exchange(listen, &[short_header(&cid, 2)]);
    assert_eq!(
        replies.into_iter().map(|r| r.data).collect::<Vec<_>>(),
        [short_header(&cid, 2)]
    );
}

#[test]
fn replacing_the_pool_mid_stream_loses_nothing() {
    const CLIENTS: usize = 3;
    const WINDOWS: u64 = 40;
    const WINDOW: u64 = 8;

    let (cluster, lb, listen) = fixture(3, 2, DataplaneOptions::default());
    let pools = [
        cluster.pool(),
        cluster.pool_with(|name| {
            if name == "b3" {
                BackendState::Draining
            } else {
                BackendState::Active
            }
        }),
    ];

    let replies = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let cluster = &cluster;
                scope.spawn(move || {
                    let client = Peer::client();
                    let mut replies = 0;
                    for window in 0..WINDOWS {
                        let datagrams: Vec<Vec<u8>> = (0..WINDOW)
                            .map(|i| {
                                let seq = ((c as u64) << 32) | (window * WINDOW + i);
                                let name = ["b1", "b2", "b3"][(seq % 3) as usize];
                                short_header(&cluster.cid(name), seq)
                            })
                            .collect();
                        replies += client.exchange(listen, &datagrams).len();
                    }
                    replies
                })
            })
            .collect();
        let mut swaps = 0;
        while !clients.iter().all(|c| c.is_finished()) {
            swaps += 1;
            lb.set_pool(pools[swaps % 2].clone());
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(swaps > 1, "pools were swapped while traffic flowed");
        clients
            .into_iter()
            .map(|c| c.join().expect("client"))
            .sum::<usize>()
    });

    let sent = CLIENTS * (WINDOWS * WINDOW) as usize;
    assert_eq!(replies, sent);
    let received: usize = cluster.backends.iter().map(|b| b.received().len()).sum();
    assert_eq!(received, sent);
    let stats = lb.stats();
    assert_eq!(stats.router.routed(Route::Cid), sent as u64);
    let to_clients: u64 = stats.to_clients().map(|(_, t)| t.packets).sum();
    assert_eq!(to_clients, sent as u64);
    // One flow per client and backend.
    assert_eq!(
        stats.flows_created,
        (CLIENTS * cluster.backends.len()) as u64,
        "flows survive pool swaps"
    );
}

#[test]
fn a_restarted_load_balancer_keeps_established_connections() {
    let (cluster, first, listen) = fixture(3, 2, DataplaneOptions::default());
    let clients: Vec<Peer> = (0..3).map(|_| Peer::client()).collect();
    let names = ["b1", "b2", "b3"];
    let cids: Vec<_> = names.iter().map(|n| cluster.cid(n)).collect();
    let dcid = client_dcid(7);
    let mut seq = 0;
    let mut traffic = |clients: &[Peer]| {
        for client in clients {
            for cid in &cids {
                seq += 1;
                let replies = client.exchange(listen, &[short_header(cid, seq)]);
                assert_eq!(replies.len(), 1);
                assert_eq!(replies[0].from, listen);
            }
        }
    };
    traffic(&clients);
    let handshake = initial(&dcid, 0, 1200);
    clients[0].exchange(listen, [&handshake]);
    let handshake_backend = cluster
        .backends
        .iter()
        .position(|b| b.payloads().contains(&handshake))
        .expect("the Initial reached a backend");
    first.shutdown().expect("clean stop");

    // A new instance on the same address knows no flows; the same client sockets carry on.
    let second = Dataplane::start(
        &[listen],
        std::num::NonZeroUsize::new(2).expect("two"),
        cluster.pool(),
        DataplaneOptions::default(),
    )
    .expect("restart on the same address");
    let before: Vec<usize> = cluster
        .backends
        .iter()
        .map(|b| b.received().len())
        .collect();
    traffic(&clients);
    for (backend, count) in cluster.backends.iter().zip(before) {
        let cid = &cids[names.iter().position(|n| *n == backend.name).expect("name")];
        let new = backend.received().split_off(count);
        assert_eq!(new.len(), clients.len(), "{}", backend.name);
        assert!(
            new.iter()
                .all(|d| d.data.get(1..=cid.len()) == Some(&cid[..])),
            "{} gets its own connections",
            backend.name
        );
    }
    // A retransmitted Initial of a handshake in progress lands where the first did.
    let again = initial(&dcid, 1, 1200);
    clients[0].exchange(listen, [&again]);
    assert!(
        cluster.backends[handshake_backend]
            .payloads()
            .contains(&again)
    );
    // One flow per client and backend.
    assert_eq!(second.stats().flows_created, 9);
}

#[test]
fn a_draining_backend_keeps_its_connections_and_gets_no_new_ones() {
    let (cluster, lb, listen) = fixture(3, 2, DataplaneOptions::default());
    let client = Peer::client();
    let cid = cluster.cid("b1");
    assert_eq!(client.exchange(listen, &[short_header(&cid, 0)]).len(), 1);

    lb.set_pool(cluster.pool_with(|name| {
        if name == "b1" {
            BackendState::Draining
        } else {
            BackendState::Active
        }
    }));
    let stragglers: Vec<Vec<u8>> = (1..=5).map(|seq| short_header(&cid, seq)).collect();
    let replies = client.exchange(listen, &stragglers);
    assert_eq!(
        replies.len(),
        stragglers.len(),
        "b1's connection carries on"
    );

    let handshakes: Vec<Vec<u8>> = (100..140)
        .map(|n| initial(&client_dcid(n), n, 1200))
        .collect();
    for chunk in handshakes.chunks(10) {
        let newcomer = Peer::client();
        assert_eq!(newcomer.exchange(listen, chunk).len(), chunk.len());
    }
    let b1 = cluster.backend("b1").payloads();
    assert!(stragglers.iter().all(|d| b1.contains(d)));
    assert!(
        handshakes.iter().all(|d| !b1.contains(d)),
        "no new connection on b1"
    );
    let elsewhere: usize = ["b2", "b3"]
        .iter()
        .map(|n| cluster.backend(n).payloads().len())
        .sum();
    assert_eq!(elsewhere, handshakes.len());
}

#[test]
fn ipv6_listeners_and_a_pool_of_both_families() {
    let loopback6: IpAddr = "::1".parse().expect("address");
    if UdpSocket::bind((loopback6, 0)).is_err() {
        eprintln!("skipped: cannot bind [::1]");
        return;
    }
    let cluster = Cluster::on(&[IpAddr::from(LOCALHOST), loopback6]).expect("backends");
    let lb = start(
        &["[::1]:0", "127.0.0.1:0"],
        2,
        cluster.pool(),
        DataplaneOptions::default(),
    );
    let (listen6, listen4) = (lb.local_addrs()[0], lb.local_addrs()[1]);
    assert!(listen6.is_ipv6());

    let client6 = Peer::bind(SocketAddr::new(loopback6, 0)).expect("bind");
    let client4 = Peer::client();
    let mut seq = 0;
    for (client, listen) in [(&client6, listen6), (&client4, listen4)] {
        for name in ["b1", "b2"] {
            seq += 1;
            let datagram = short_header(&cluster.cid(name), seq);
            let replies = client.exchange(listen, [&datagram]);
            assert_eq!(replies.len(), 1, "{name} via {listen}");
            assert_eq!((replies[0].from, &replies[0].data), (listen, &datagram));
            assert!(cluster.backend(name).payloads().contains(&datagram));
        }
    }
    assert!(cluster.backend("b2").received()[0].from.is_ipv6());
    assert!(cluster.backend("b1").received()[0].from.is_ipv4());
    // Per client: one flow to each backend family.
    assert_eq!(lb.stats().flows_created, 4);
}

#[test]
fn a_wildcard_listener_answers_from_the_address_the_client_sent_to() {
    let cluster = Cluster::start(1);
    let lb = start(
        &["0.0.0.0:0"],
        1,
        cluster.pool(),
        DataplaneOptions::default(),
    );
    let port = lb.local_addrs()[0].port();
    let cid = cluster.cid("b1");
    for (seq, ip) in [[127, 0, 0, 1], [127, 0, 0, 2]].into_iter().enumerate() {
        let vip = SocketAddr::from((ip, port));
        let client = Peer::client();
        let replies = client.exchange(vip, &[short_header(&cid, seq as u64)]);
        assert_eq!(replies.len(), 1, "a reply via {vip}");
        assert_eq!(replies[0].from, vip);
    }
}

#[test]
fn start_refuses_addresses_it_cannot_listen_on() {
    let cluster = Cluster::start(1);
    let holder = UdpSocket::bind((LOCALHOST, 0)).expect("bind");
    let taken = holder.local_addr().expect("bound");
    let err = Dataplane::start(
        &[taken],
        std::num::NonZeroUsize::MIN,
        cluster.pool(),
        DataplaneOptions::default(),
    )
    .expect_err("the port is held without SO_REUSEPORT");
    assert!(matches!(err, DataplaneError::Bind { address, .. } if address == taken));
    assert!(err.to_string().contains(&taken.to_string()), "{err}");

    let twice = [taken, taken];
    let err = Dataplane::start(
        &twice,
        std::num::NonZeroUsize::MIN,
        cluster.pool(),
        DataplaneOptions::default(),
    )
    .expect_err("listed twice");
    assert!(matches!(err, DataplaneError::DuplicateListenAddress { .. }));
}

#[test]
fn every_worker_serves_its_share_and_stats_sum_them() {
    let (cluster, lb, listen) = fixture(2, 3, DataplaneOptions::default());
    // Enough client ports that SO_REUSEPORT spreads them over the workers.
    let clients: Vec<Peer> = (0..12).map(|_| Peer::client()).collect();
    for (seq, client) in (0..).zip(&clients) {
        let datagram = short_header(&cluster.cid(if seq % 2 == 0 { "b1" } else { "b2" }), seq);
        assert_eq!(client.exchange(listen, &[datagram]).len(), 1);
    }
    let stats = lb.stats();
    assert_eq!(stats.flows_active, clients.len() as u64);
    assert_eq!(stats.router.routed(Route::Cid), clients.len() as u64);
    assert_eq!(
        stats.to_client("b1").packets + stats.to_client("b2").packets,
        12
    );
    let final_stats = lb.shutdown().expect("clean stop");
    assert_eq!(final_stats.flows_created, clients.len() as u64);
}
