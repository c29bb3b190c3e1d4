//! A CID-routed decision allocates nothing: counted by a global allocator wrapper. This file
//! holds one test, so no other test thread allocates while it counts.

mod support;

use std::alloc::System;
use std::sync::Arc;
use std::time::Instant;

use qlb_router::{Route, Router};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use support::{client, configs, encoder, pool, short_header};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn cid_routed_decisions_do_not_allocate() {
    let mut router = Router::new(Arc::new(pool(1..=8)));
    let datagrams: Vec<Vec<u8>> = configs()
        .iter()
        .flat_map(|config| (1..=8).map(move |n| short_header(&encoder(config, n).generate())))
        .collect();
    let now = Instant::now();

    let region = Region::new(GLOBAL);
    let mut routed_by_cid = 0;
    for round in 0..100u32 {
        for datagram in &datagrams {
            let decision = router.route(datagram, client(round), now);
            if decision.forward().map(|f| f.route) == Some(Route::Cid) {
                routed_by_cid += 1;
            }
        }
    }
    let change = region.change();

    assert_eq!(routed_by_cid, 100 * datagrams.len());
    assert_eq!(
        (change.allocations, change.reallocations),
        (0, 0),
        "{change:?}"
    );
}
