//! The cost of wrapping a datagram (checksums included) and of unwrapping it, against copying
//! the datagram alone (the baseline every forwarder pays).

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use qlb_gue::{Ecn, decapsulate, encapsulate};

fn gue(c: &mut Criterion) {
    let v4: (SocketAddr, SocketAddr) = (
        "192.0.2.7:50000".parse().expect("address"),
        "198.51.100.1:443".parse().expect("address"),
    );
    let v6: (SocketAddr, SocketAddr) = (
        "[2001:db8::7]:50000".parse().expect("address"),
        "[2001:db8::1]:443".parse().expect("address"),
    );
    for size in [64usize, 1200] {
        let payload = vec![0x5a; size];
        let mut group = c.benchmark_group(format!("gue/{size}"));
        group.throughput(Throughput::Elements(1));
        let mut out = Vec::with_capacity(2048);
        group.bench_function("copy (baseline)", |b| {
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(&payload));
                black_box(&out);
            })
        });
        for (family, (src, dst)) in [("ipv4", v4), ("ipv6", v6)] {
            group.bench_function(format!("encapsulate {family}"), |b| {
                b.iter(|| {
                    out.clear();
                    encapsulate(&mut out, src, dst, Ecn::Ect0, black_box(&payload)).expect("fits");
                    black_box(&out);
                })
            });
            let mut packet = Vec::new();
            encapsulate(&mut packet, src, dst, Ecn::Ect0, &payload).expect("fits");
            group.bench_function(format!("decapsulate {family}"), |b| {
                b.iter(|| black_box(decapsulate(black_box(&packet)).expect("reads")))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, gue);
criterion_main!(benches);
