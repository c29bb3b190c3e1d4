//! Routing decisions per second, each beside its baseline in the same run: parsing the header
//! and decoding the DCID with `quic_lb::Decoder`, which every decision has to do anyway. The
//! ratio route / baseline is what the router adds (server ID lookup, state check, counters;
//! for fallback Initials also the flow tables and the Maglev lookup).
//!
//! Every iteration handles a batch of datagrams for several backends, so the branch predictor
//! does not learn one packet; throughput is reported per datagram.

#[path = "../tests/support/mod.rs"]
mod support;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qlb_router::{Header, Route, Router};
use quic_lb::Decoder;
use support::{client, client_dcid, configs, encoder, initial, pool, short_header};

/// Datagrams per iteration.
const BATCH: usize = 256;
const BACKENDS: u8 = 8;
/// Where an Initial's DCID starts: first octet, version, DCID length.
const INITIAL_DCID_AT: usize = 6;

/// The baseline, what every decision does first: find the DCID and decode it. Results stay
/// where they were written and go to `black_box` by reference, so the baseline pays nothing
/// for moving them (moving a just-written `Decoded` stalls on store forwarding, which the
/// router avoids too).
fn parse_and_decode(datagram: &[u8], decoder: &Decoder) {
    let parsed = Header::parse(datagram, decoder);
    if let Ok(header) = &parsed
        && let Some(dcid) = header.dcid()
    {
        black_box(&decoder.decode(dcid));
    }
}

fn cid_routed(c: &mut Criterion) {
    let modes = ["plaintext", "single_pass", "four_pass"];
    for (mode, config) in modes.into_iter().zip(configs()) {
        let mut router = Router::new(Arc::new(pool(1..=BACKENDS)));
        let decoder = router.pool().decoder().clone();
        let datagrams: Vec<Vec<u8>> = (0..BATCH)
            .map(|i| {
                let n = (i % usize::from(BACKENDS)) as u8 + 1;
                short_header(&encoder(&config, n).generate())
            })
            .collect();
        let client = client(1);
        let now = Instant::now();
        assert!(datagrams.iter().all(|d| {
            router.route(d, client, now).forward().map(|f| f.route) == Some(Route::Cid)
        }));

        let mut group = c.benchmark_group(format!("cid_{mode}"));
        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function("baseline_parse_decode", |b| {
            b.iter(|| {
                for datagram in &datagrams {
                    parse_and_decode(black_box(datagram), &decoder);
                }
            })
        });
        group.bench_function("route", |b| {
            b.iter(|| {
                for datagram in &datagrams {
                    let _ = black_box(router.route(black_box(datagram), client, now));
                }
            })
        });
        group.finish();
    }
}

/// Client Initials with a DCID never seen before: every one goes to the Maglev fallback and
/// into the flow tables, which stay full and evict (a flood of new handshakes).
fn fallback_initials(c: &mut Criterion) {
    let mut router = Router::new(Arc::new(pool(1..=BACKENDS)));
    let decoder = router.pool().decoder().clone();
    let mut datagrams: Vec<Vec<u8>> = (0..BATCH as u32)
        .map(|n| initial(&client_dcid(n)))
        .collect();
    let now = Instant::now();
    let mut fresh: u32 = 0;
    // Makes every DCID of the batch new: its last four octets count.
    let mut renew = move |datagrams: &mut [Vec<u8>]| {
        for datagram in datagrams.iter_mut() {
            fresh = fresh.wrapping_add(1);
            let dcid_tail = INITIAL_DCID_AT + 4..INITIAL_DCID_AT + 8;
            if let Some(tail) = datagram.get_mut(dcid_tail) {
                tail.copy_from_slice(&fresh.to_be_bytes());
            }
        }
    };
    renew(&mut datagrams);
    assert!(datagrams.iter().enumerate().all(|(i, d)| {
        let decision = router.route(d, client(i as u32), now);
        decision.forward().map(|f| f.route) == Some(Route::Fallback)
    }));

    let mut group = c.benchmark_group("fallback_initial");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("baseline_parse_decode", |b| {
        b.iter(|| {
            renew(&mut datagrams);
            for datagram in &datagrams {
                parse_and_decode(black_box(datagram), &decoder);
            }
        })
    });
    group.bench_function("route", |b| {
        b.iter(|| {
            renew(&mut datagrams);
            for (i, datagram) in (0u32..).zip(&datagrams) {
                let _ = black_box(router.route(black_box(datagram), client(i), now));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, cid_routed, fallback_initials);
criterion_main!(benches);
