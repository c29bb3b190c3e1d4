//! The load balancer's brain without a network: datagrams built by hand go into a
//! [`Router`], decisions come out. A client's Initial goes to the Maglev fallback; a packet
//! under a connection ID that backend `b` issued goes to `b` by its server ID, from any
//! client address (that is what keeps a migrating connection alive); garbage is dropped with
//! a reason. Every decision is counted.
//!
//! ```text
//! cargo run -p qlb-router --example route_by_hand
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use qlb_router::{Backend, Decision, Pool, Route, Router};
use quic_lb::{Config, ConfigId, Decoder, Encoder, Key};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The cluster's QUIC-LB configuration: codepoint 0, 2-octet server IDs, 6-octet nonces,
    // encrypted (four-pass). Servers encode with it; the load balancer decodes.
    let config = Config::new(ConfigId::new(0)?, 2, 6, Some(Key::random()))?;
    let mut decoder = Decoder::new();
    decoder.insert(config.clone());
    let pool = Pool::new(
        decoder,
        [
            ("a", "192.0.2.1:443", "0001"),
            ("b", "192.0.2.2:443", "0002"),
        ]
        .map(|(name, addr, server_id)| {
            let (addr, server_id) = (
                addr.parse().expect("address"),
                server_id.parse().expect("hex"),
            );
            Backend::new(name, addr).with_server_id(config.id(), server_id)
        }),
    )?;
    let mut router = Router::new(Arc::new(pool));
    let now = Instant::now();
    let phone: SocketAddr = "198.51.100.7:5000".parse()?;

    // 1. A client's first Initial: its DCID is random, so the fallback picks a backend (the
    //    same one on every load balancer with this pool).
    let mut initial = vec![
        0xc0, 0, 0, 0, 1, 8, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0,
    ];
    initial.resize(1200, 0);
    let decision = router.route(&initial, phone, now);
    show("Initial, client-chosen DCID", &router, &decision);
    assert_eq!(decision.forward().map(|f| f.route), Some(Route::Fallback));

    // 2. Backend b answered and issued connection IDs that encode its server ID; the client
    //    now sends short-header packets to one of them.
    let cid = Encoder::new(config.clone(), "0002".parse()?)?.generate();
    let mut short = vec![0x40];
    short.extend_from_slice(&cid);
    short.extend_from_slice(&[0x5a; 40]);
    let decision = router.route(&short, phone, now);
    show("1-RTT packet to b's CID", &router, &decision);
    assert_eq!(decision.forward().map(|f| f.route), Some(Route::Cid));

    // 3. The phone moves to another network: new address, same CID, same backend. A
    //    4-tuple hash would have sent it elsewhere.
    let moved: SocketAddr = "203.0.113.9:6000".parse()?;
    let after = router.route(&short, moved, now);
    show("same CID from a new address", &router, &after);
    assert_eq!(
        after.forward().map(|f| f.address),
        decision.forward().map(|f| f.address)
    );

    // 4. Not QUIC: dropped, and the reason counted.
    let garbage = router.route(&[0xff], phone, now);
    show("one stray octet", &router, &garbage);
    assert!(matches!(garbage, Decision::Drop(_)));

    let counters = router.counters();
    println!(
        "\n{} decisions: {} by CID, {} by the fallback",
        counters.decisions(),
        counters.routed(Route::Cid),
        counters.routed(Route::Fallback),
    );
    Ok(())
}

/// Prints one decision: the backend's name and how it was chosen, or why it was dropped.
fn show(what: &str, router: &Router, decision: &Decision) {
    match decision {
        Decision::Forward(forward) => {
            let name = router
                .pool()
                .backend(forward.backend)
                .map_or("?", |backend| backend.name());
            println!(
                "{what:32} -> {name} ({}) by {}",
                forward.address,
                forward.route.as_str()
            );
        }
        Decision::Drop(reason) => println!("{what:32} -> dropped: {}", reason.as_str()),
    }
}
