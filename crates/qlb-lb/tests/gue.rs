//! The data plane in `gue` mode with real UDP sockets on loopback. The backends are plain UDP
//! sockets standing in for a backend's GUE port: they record the encapsulated datagrams they
//! receive (and echo nothing), and send encapsulated replies from their address as a backend
//! answering through the load balancer does (inner source the VIP, inner destination the
//! client, to the outer source of the client's latest datagram).

mod support;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use qlb_gue::Ecn;
use qlb_lb::dataplane::{DataplaneDrop, DataplaneOptions, GueOptions, RetryOffload, RetryTrigger};
use qlb_retry::{TokenKey, TokenKeys};
use qlb_router::Route;
use qlb_testkit::{eventually_blocking, fixtures};
use quinn_udp::EcnCodepoint;
use support::{Cluster, Datagram, Peer, WAIT, client_dcid, initial, short_header, sorted, start};

/// `gue` mode from `bind` (port 0: free ports) over `ports` ports.
fn gue(bind: &str, ports: u16) -> DataplaneOptions {
    DataplaneOptions {
        gue: Some(GueOptions {
            bind: bind.parse().expect("address"),
            ports,
        }),
        ..DataplaneOptions::default()
    }
}

/// `count` backends on `ip` that record and never echo.
fn backends(ip: &str, count: usize) -> Cluster {
    let ip: IpAddr = ip.parse().expect("address");
    let cluster = Cluster::on(&vec![ip; count]).expect("backends");
    for backend in &cluster.backends {
        backend.mute(true);
    }
    cluster
}

/// What an encapsulated datagram carries: inner source, inner destination, inner ECN and
/// the payload.
fn inner(datagram: &Datagram) -> (SocketAddr, SocketAddr, Ecn, Vec<u8>) {
    let packet = qlb_gue::decapsulate(&datagram.data).expect("a GUE packet");
    (
        packet.source,
        packet.destination,
        packet.ecn,
        packet.payload.to_vec(),
    )
}

/// `payload` encapsulated from `source` to `destination`.
fn encapsulated(source: SocketAddr, destination: SocketAddr, ecn: Ecn, payload: &[u8]) -> Vec<u8> {
    let mut packet = Vec::new();
    qlb_gue::encapsulate(&mut packet, source, destination, ecn, payload).expect("fits");
    packet
}

#[test]
fn client_datagrams_reach_their_backend_encapsulated_unchanged_with_client_and_vip_inside() {
    let cluster = backends("127.0.0.1", 2);
    let lb = start(&["127.0.0.1:0"], 2, cluster.pool(), gue("127.0.0.1:0", 4));
    let (listen, gue_addrs) = (lb.local_addrs()[0], lb.gue_addrs().to_vec());
    assert_eq!(gue_addrs.len(), 4);
    let clients: Vec<Peer> = (0..3).map(|_| Peer::client()).collect();
    let mut sent = Vec::new();
    for (n, client) in (0u64..).zip(&clients) {
        for (name, ecn) in [("b1", Some(EcnCodepoint::Ect0)), ("b2", None)] {
            let datagram = short_header(&cluster.cid(name), n);
            client.send_batch(listen, &datagram, ecn, None);
            sent.push((name, client.addr(), datagram, ecn));
        }
        // A new connection's Initial: the fallback picks its backend.
        let first = initial(&client_dcid(n), n, 1200);
        client.send(listen, &first);
        sent.push(("either", client.addr(), first, None));
    }

    eventually_blocking(WAIT, "every datagram at a backend", || {
        cluster
            .backends
            .iter()
            .map(|b| b.received().len())
            .sum::<usize>()
            == sent.len()
    })
    .expect("in time");
    let received: Vec<(String, Datagram)> = cluster
        .backends
        .iter()
        .flat_map(|b| b.received().into_iter().map(|d| (b.name.clone(), d)))
        .collect();
    for (name, client, datagram, ecn) in &sent {
        let (backend, outer) = received
            .iter()
            .find(|(_, d)| inner(d).3 == *datagram)
            .expect("the datagram arrived, unchanged");
        assert!(*name == "either" || name == backend, "routed to {backend}");
        let (source, destination, inner_ecn, _) = inner(outer);
        assert_eq!(
            (source, destination),
            (*client, listen),
            "client and VIP inside"
        );
        assert!(gue_addrs.contains(&outer.from), "from a GUE socket");
        assert_eq!(outer.ecn, *ecn, "the outer codepoint");
        let expected = match ecn {
            Some(EcnCodepoint::Ect0) => Ecn::Ect0,
            _ => Ecn::NotEct,
        };
        assert_eq!(inner_ecn, expected, "the inner codepoint");
    }
    let stats = lb.stats();
    assert_eq!(stats.router.routed(Route::Cid), 6);
    assert_eq!(stats.router.routed(Route::Fallback), 3);
    let to_backend: u64 = stats.router.backends().map(|(_, t)| t.packets).sum();
    assert_eq!(to_backend, 9);
    assert_eq!(
        (stats.flows_created, stats.flows_active),
        (0, 0),
        "no flows"
    );
    assert!(DataplaneDrop::ALL.iter().all(|d| stats.dropped(*d) == 0));
}

#[test]
fn encapsulated_replies_reach_the_client_from_the_vip_through_any_gue_port() {
    let cluster = backends("127.0.0.1", 1);
    let lb = start(&["127.0.0.1:0"], 2, cluster.pool(), gue("127.0.0.1:0", 4));
    let listen = lb.local_addrs()[0];
    let client = Peer::client();
    let backend = cluster.backend("b1");
    client.send(listen, &short_header(&cluster.cid("b1"), 1));
    let latest = backend.wait_for(1)[0].from;

    // To the port the client's datagram came from, and to the others: no state, so any
    // socket of any worker relays any reply.
    let mut expected = Vec::new();
    for (seq, to) in (10u64..).zip(std::iter::once(latest).chain(lb.gue_addrs().iter().copied())) {
        let reply = short_header(&[7; 8], seq);
        let packet = encapsulated(listen, client.addr(), Ecn::Ect1, &reply);
        backend.send(to, &packet, None);
        expected.push(reply);
    }
    let replies = client.collect(expected.len());
    // Through different sockets and workers: in any order.
    assert_eq!(
        sorted(replies.iter().map(|r| r.data.clone()).collect()),
        sorted(expected.clone())
    );
    assert!(replies.iter().all(|r| r.from == listen), "from the VIP");
    assert!(
        replies.iter().all(|r| r.ecn == Some(EcnCodepoint::Ect1)),
        "the inner codepoint"
    );

    // Congestion on the tunnel marks the reply.
    let packet = encapsulated(listen, client.addr(), Ecn::Ect0, b"\x40congested");
    backend.send(latest, &packet, Some(EcnCodepoint::Ce));
    let reply = client.collect(1);
    assert_eq!(reply[0].ecn, Some(EcnCodepoint::Ce));

    let stats = lb.stats();
    let traffic = stats.to_client("b1");
    assert_eq!(traffic.packets, 6);
    let octets: usize = expected.iter().map(Vec::len).sum::<usize>() + b"\x40congested".len();
    assert_eq!(traffic.bytes, octets as u64, "the payload octets");
}

#[test]
fn strangers_other_addresses_and_malformed_packets_are_dropped_and_counted() {
    let cluster = backends("127.0.0.1", 1);
    let lb = start(&["127.0.0.1:0"], 1, cluster.pool(), gue("127.0.0.1:0", 1));
    let (listen, gue_addr) = (lb.local_addrs()[0], lb.gue_addrs()[0]);
    let client = Peer::client();
    let backend = cluster.backend("b1");
    let good = |payload: &[u8]| encapsulated(listen, client.addr(), Ecn::NotEct, payload);

    // A well-formed reply from an address that is no backend.
    let stranger = Peer::client();
    stranger.send(gue_addr, &good(b"\x40from a stranger"));
    // From the backend: another inner source than a VIP, twice.
    let not_vip: SocketAddr = "127.0.0.1:1".parse().expect("address");
    for _ in 0..2 {
        backend.send(
            gue_addr,
            &encapsulated(not_vip, client.addr(), Ecn::NotEct, b"\x40x"),
            None,
        );
    }
    // Not GUE; truncated; to nobody.
    backend.send(gue_addr, b"\x06garbage", None);
    let truncated = good(b"\x40truncated");
    backend.send(gue_addr, &truncated[..truncated.len() - 1], None);
    let nobody = SocketAddr::new(client.addr().ip(), 0);
    backend.send(
        gue_addr,
        &encapsulated(listen, nobody, Ecn::NotEct, b"\x40x"),
        None,
    );

    eventually_blocking(WAIT, "every drop counted", || {
        let stats = lb.stats();
        (
            stats.dropped(DataplaneDrop::UnknownSource),
            stats.dropped(DataplaneDrop::UnknownVip),
            stats.dropped(DataplaneDrop::Decapsulation),
        ) == (1, 2, 3)
    })
    .expect("in time");
    // Then a good one: only it arrives (the others were dropped before it was sent).
    backend.send(gue_addr, &good(b"\x40good"), None);
    let replies = client.collect(1);
    assert_eq!(
        replies.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
        [b"\x40good".to_vec()]
    );
    assert_eq!(lb.stats().to_client("b1").packets, 1);
}

#[test]
fn a_new_pool_takes_replies_from_its_backends_only() {
    let cluster = backends("127.0.0.1", 2);
    let full = cluster.pool();
    let first = full.backends().iter().take(1).cloned();
    let only_b1 = qlb_router::Pool::new(full.decoder().clone(), first).expect("pool");
    let lb = start(
        &["127.0.0.1:0"],
        1,
        Arc::new(only_b1),
        gue("127.0.0.1:0", 1),
    );
    let (listen, gue_addr) = (lb.local_addrs()[0], lb.gue_addrs()[0]);
    let client = Peer::client();
    let reply = encapsulated(listen, client.addr(), Ecn::NotEct, b"\x40reply");
    let (b1, b2) = (cluster.backend("b1"), cluster.backend("b2"));
    // b2 is no backend of the pool yet: its replies are a stranger's.
    b2.send(gue_addr, &reply, None);
    eventually_blocking(WAIT, "b2 unknown", || {
        lb.stats().dropped(DataplaneDrop::UnknownSource) == 1
    })
    .expect("in time");
    b1.send(gue_addr, &reply, None);
    assert_eq!(client.collect(1).len(), 1, "b1's reply");
    // b2 joins: its replies go through, counted as its own.
    lb.set_pool(full);
    b2.send(gue_addr, &reply, None);
    assert_eq!(client.collect(1).len(), 1, "b2's reply");
    let stats = lb.stats();
    assert_eq!(
        (stats.to_client("b1").packets, stats.to_client("b2").packets),
        (1, 1)
    );
}

#[test]
fn a_restarted_data_plane_forwards_replies_before_the_client_sends_again() {
    let cluster = backends("127.0.0.1", 1);
    let first = start(&["127.0.0.1:0"], 2, cluster.pool(), gue("127.0.0.1:0", 1));
    let (listen, gue_addr) = (first.local_addrs()[0], first.gue_addrs()[0]);
    let client = Peer::client();
    client.send(listen, &short_header(&cluster.cid("b1"), 1));
    let backend = cluster.backend("b1");
    assert_eq!(backend.wait_for(1)[0].from, gue_addr);
    first.shutdown().expect("stops");

    // The same file: the same listening and GUE addresses, nothing else carried over.
    let listen_text = listen.to_string();
    let options = gue(&gue_addr.to_string(), 1);
    let second = start(&[listen_text.as_str()], 2, cluster.pool(), options);
    assert_eq!(second.gue_addrs(), [gue_addr]);
    let download: Vec<Vec<u8>> = (0..5).map(|seq| short_header(&[7; 8], seq)).collect();
    for datagram in &download {
        let packet = encapsulated(listen, client.addr(), Ecn::NotEct, datagram);
        backend.send(gue_addr, &packet, None);
    }
    let replies = client.collect(download.len());
    assert_eq!(
        replies.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
        download
    );
    assert!(replies.iter().all(|r| r.from == listen));
}

#[test]
fn a_wildcard_listener_encapsulates_the_address_sent_to_and_replies_from_the_inner_source() {
    let cluster = backends("127.0.0.1", 1);
    let lb = start(&["0.0.0.0:0"], 1, cluster.pool(), gue("127.0.0.1:0", 2));
    let port = lb.local_addrs()[0].port();
    let vip = SocketAddr::from(([127, 0, 0, 1], port));
    let client = Peer::client();
    let datagram = short_header(&cluster.cid("b1"), 1);
    client.send(vip, &datagram);
    let backend = cluster.backend("b1");
    let outer = backend.wait_for(1)[0].clone();
    assert_eq!(inner(&outer), (client.addr(), vip, Ecn::NotEct, datagram));

    // Every loopback address is local: a reply names the one it leaves from.
    for ip in [[127, 0, 0, 1], [127, 0, 0, 2]] {
        let source = SocketAddr::from((ip, port));
        let packet = encapsulated(source, client.addr(), Ecn::NotEct, b"\x40reply");
        backend.send(outer.from, &packet, None);
        let reply = client.collect(1);
        assert_eq!(reply.len(), 1, "a reply from {source}");
        assert_eq!(reply[0].from, source);
    }
    // Another port is no VIP.
    let other = SocketAddr::from(([127, 0, 0, 1], port.wrapping_add(1)));
    backend.send(
        outer.from,
        &encapsulated(other, client.addr(), Ecn::NotEct, b"\x40x"),
        None,
    );
    eventually_blocking(WAIT, "the unknown VIP counted", || {
        lb.stats().dropped(DataplaneDrop::UnknownVip) == 1
    })
    .expect("in time");
}

#[test]
fn ipv6_clients_and_backends_go_through_ipv6_headers() {
    // Hosts without IPv6 loopback have nothing to check.
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        return;
    }
    let cluster = backends("::1", 1);
    let lb = start(&["[::1]:0"], 1, cluster.pool(), gue("[::1]:0", 2));
    let listen = lb.local_addrs()[0];
    let client = Peer::bind("[::1]:0".parse().expect("address")).expect("client");
    let datagram = short_header(&cluster.cid("b1"), 1);
    client.send_batch(listen, &datagram, Some(EcnCodepoint::Ect1), None);
    let backend = cluster.backend("b1");
    let outer = backend.wait_for(1)[0].clone();
    assert_eq!(outer.data[1], 41, "GUE carries IPv6");
    assert_eq!(inner(&outer), (client.addr(), listen, Ecn::Ect1, datagram));
    let packet = encapsulated(listen, client.addr(), Ecn::NotEct, b"\x40reply");
    backend.send(outer.from, &packet, None);
    let reply = client.collect(1);
    assert_eq!(reply.len(), 1);
    assert_eq!(
        (reply[0].from, reply[0].data.as_slice()),
        (listen, &b"\x40reply"[..])
    );
}

/// The token of a Retry packet (between the SCID and the 16-octet integrity tag), and its
/// SCID.
fn retry_token_and_scid(packet: &[u8]) -> (Vec<u8>, Vec<u8>) {
    assert_eq!(packet[0] & 0xf0, 0xf0, "a Retry");
    let dcid_len = usize::from(packet[5]);
    let scid_at = 6 + dcid_len;
    let scid_len = usize::from(packet[scid_at]);
    let token_at = scid_at + 1 + scid_len;
    (
        packet[token_at..packet.len() - 16].to_vec(),
        packet[scid_at + 1..token_at].to_vec(),
    )
}

/// A v1 Initial to `dcid` carrying `token`, padded to 1200 octets.
fn initial_with_token(dcid: &[u8], token: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0xc0, 0, 0, 0, 1, u8::try_from(dcid.len()).expect("DCID")];
    datagram.extend_from_slice(dcid);
    datagram.extend_from_slice(&[8, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc, 0xcc]);
    let len = u16::try_from(token.len()).expect("token");
    datagram.extend_from_slice(&(0x4000 | len).to_be_bytes());
    datagram.extend_from_slice(token);
    datagram.resize(1200, 0);
    datagram
}

#[test]
fn retry_offload_answers_from_the_listener_and_valid_tokens_reach_the_backend_unchanged() {
    let cluster = backends("127.0.0.1", 2);
    let options = DataplaneOptions {
        retry: Some(RetryOffload {
            trigger: RetryTrigger::Always,
            keys: Arc::new(TokenKeys::new(
                TokenKey::from_cluster_secret(fixtures::CLUSTER_SECRET),
                None,
                10,
            )),
            config_id: fixtures::config(0).id(),
        }),
        ..gue("127.0.0.1:0", 2)
    };
    let lb = start(&["127.0.0.1:0"], 1, cluster.pool(), options);
    let listen = lb.local_addrs()[0];
    let client = Peer::client();
    client.send(listen, &initial(&client_dcid(1), 1, 1200));
    let retry = client.collect(1);
    assert_eq!(retry.len(), 1, "a Retry");
    assert_eq!(retry[0].from, listen);
    let (token, scid) = retry_token_and_scid(&retry[0].data);

    // The backend sees the client's own address, which the token names: it goes unchanged.
    let second = initial_with_token(&scid, &token);
    client.send(listen, &second);
    eventually_blocking(WAIT, "the Initial at a backend", || {
        cluster.backends.iter().any(|b| !b.received().is_empty())
    })
    .expect("in time");
    let arrived: Vec<Datagram> = cluster.backends.iter().flat_map(|b| b.received()).collect();
    assert_eq!(arrived.len(), 1, "only the second Initial");
    assert_eq!(
        inner(&arrived[0]),
        (client.addr(), listen, Ecn::NotEct, second)
    );
    let stats = lb.stats();
    assert_eq!((stats.retry.sent, stats.retry.tokens_valid), (1, 1));
    assert_eq!(stats.router.routed(Route::Cid), 1);
}

#[test]
fn gue_ports_are_bound_by_every_worker_and_refused_when_they_clash() {
    let cluster = backends("127.0.0.1", 1);
    let lb = start(&["127.0.0.1:0"], 3, cluster.pool(), gue("127.0.0.1:0", 3));
    let ports: BTreeSet<u16> = lb.gue_addrs().iter().map(SocketAddr::port).collect();
    assert_eq!(ports.len(), 3, "three ports");
    // A listening address among the GUE ports would split its datagrams.
    let free = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|probe| probe.local_addr())
        .expect("a free port");
    let clash = qlb_lb::dataplane::Dataplane::start(
        &[free],
        std::num::NonZeroUsize::MIN,
        cluster.pool(),
        gue(&free.to_string(), 1),
    );
    let refusal = clash.expect_err("a clash").to_string();
    assert!(refusal.starts_with("gue.bind: the GUE ports"), "{refusal}");
    let past = qlb_lb::dataplane::Dataplane::start(
        &["127.0.0.1:0".parse().expect("address")],
        std::num::NonZeroUsize::MIN,
        cluster.pool(),
        gue("127.0.0.1:65535", 2),
    );
    assert!(
        past.expect_err("past 65535")
            .to_string()
            .starts_with("gue.ports:")
    );
}
