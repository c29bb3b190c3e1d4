//! A CID-routed decision allocates nothing: counted by a global allocator wrapper. It counts
//! every thread of the process, the test harness's too, so the loop is measured in several
//! regions and the quietest must show zero: an allocation per decision would show in all.

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

    let mut routed_by_cid = 0;
    let quietest = (0..5u32)
        .map(|region_index| {
            let region = Region::new(GLOBAL);
            for round in 0..20u32 {
                for datagram in &datagrams {
                    let decision = router.route(datagram, client(region_index * 20 + round), now);
                    if decision.forward().map(|f| f.route) == Some(Route::Cid) {
                        routed_by_cid += 1;
                    }
                }
            }
            region.change()
        })
        .min_by_key(|change| change.allocations + change.reallocations)
        .expect("five regions");

    assert_eq!(routed_by_cid, 100 * datagrams.len());
    assert_eq!(
        (quietest.allocations, quietest.reallocations),
        (0, 0),
        "{quietest:?}"
    );
}
