//! `gue` mode holds nothing per client: a thousand clients from distinct addresses open no
//! file descriptor in the load balancer, spread over its GUE ports, and each keeps one. Alone
//! in its test binary, so that no other test opens or closes descriptors meanwhile.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use qlb_lb::dataplane::{DataplaneOptions, GueOptions};
use qlb_testkit::eventually_blocking;
use support::{Cluster, Peer, WAIT, short_header, start};

const CLIENTS: u16 = 1000;
const PORTS: u16 = 8;

/// The process's open file descriptors.
fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

#[test]
fn a_thousand_clients_open_no_descriptor_and_keep_one_gue_port_each() {
    let cluster = Cluster::start(1);
    let backend = cluster.backend("b1");
    backend.mute(true);
    let options = DataplaneOptions {
        gue: Some(GueOptions {
            bind: "127.0.0.1:0".parse().expect("address"),
            ports: PORTS,
        }),
        ..DataplaneOptions::default()
    };
    let lb = start(&["127.0.0.1:0"], 2, cluster.pool(), options);
    let listen = lb.local_addrs()[0];
    let cid = cluster.cid("b1");
    let before = open_descriptors();

    // Each client its own loopback address (every 127/8 address is local), two datagrams
    // each, one client socket open at a time.
    for n in 0..CLIENTS {
        let [hi, lo] = n.to_be_bytes();
        let client = Peer::bind(SocketAddr::from(([127, 1, hi, lo], 0))).expect("a client");
        for seq in 0..2 {
            client.send(listen, &short_header(&cid, u64::from(n) * 2 + seq));
        }
    }
    let wanted = 2 * usize::from(CLIENTS);
    eventually_blocking(WAIT, "every datagram at the backend", || {
        backend.received().len() == wanted
    })
    .expect("in time");
    assert_eq!(open_descriptors(), before, "no descriptor per client");

    let mut ports_of: BTreeMap<SocketAddr, BTreeSet<u16>> = BTreeMap::new();
    for datagram in backend.received() {
        let packet = qlb_gue::decapsulate(&datagram.data).expect("GUE");
        assert!(lb.gue_addrs().contains(&datagram.from));
        ports_of
            .entry(packet.source)
            .or_default()
            .insert(datagram.from.port());
    }
    assert_eq!(ports_of.len(), usize::from(CLIENTS), "distinct clients");
    assert!(
        ports_of.values().all(|ports| ports.len() == 1),
        "one GUE port per client"
    );
    let used: BTreeSet<u16> = ports_of.values().flatten().copied().collect();
    assert_eq!(used.len(), usize::from(PORTS), "every GUE port in use");
    let stats = lb.stats();
    assert_eq!((stats.flows_created, stats.flows_active), (0, 0));
}
