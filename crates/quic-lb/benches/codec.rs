//! QUIC-LB encode and decode per mode, beside bare AES-128 block operations in the same run:
//! single-pass decode is one AES decryption, four-pass decode is three or four dependent
//! AES encryptions, and the ratios in docs/PERFORMANCE.md compare against exactly those.

use std::hint::black_box;

use aes::Aes128;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use criterion::{Criterion, criterion_group, criterion_main};
use quic_lb::{Config, ConfigId, Decoder, Encoder, Key, ServerId};

const KEY: [u8; 16] = [0x8f; 16];

fn aes_baselines(c: &mut Criterion) {
    let aes = Aes128::new(&GenericArray::from(KEY));
    let mut group = c.benchmark_group("aes128");
    group.bench_function("encrypt_block", |b| {
        let mut block = GenericArray::from([7u8; 16]);
        b.iter(|| {
            aes.encrypt_block(black_box(&mut block));
        })
    });
    group.bench_function("decrypt_block", |b| {
        let mut block = GenericArray::from([7u8; 16]);
        b.iter(|| {
            aes.decrypt_block(black_box(&mut block));
        })
    });
    for chained in [3, 4] {
        group.bench_function(format!("encrypt_block_x{chained}"), |b| {
            let mut block = GenericArray::from([7u8; 16]);
            b.iter(|| {
                for _ in 0..chained {
                    aes.encrypt_block(black_box(&mut block));
                }
            })
        });
    }
    group.finish();
}

/// (label, server_id_len, nonce_len, keyed)
const MODES: [(&str, usize, usize, bool); 4] = [
    ("plaintext_2+6", 2, 6, false),
    ("single_pass_8+8", 8, 8, true),
    ("four_pass_3+4_3aes", 3, 4, true),
    ("four_pass_10+5_4aes", 10, 5, true),
];

fn setup(sid_len: usize, nonce_len: usize, keyed: bool) -> (Encoder, Decoder) {
    let key = keyed.then(|| Key::new(KEY));
    let config =
        Config::new(ConfigId::new(0).expect("id"), sid_len, nonce_len, key).expect("valid config");
    let sid = ServerId::new(&vec![0x5a; sid_len]).expect("sid");
    let encoder = Encoder::new(config.clone(), sid).expect("encoder");
    let mut decoder = Decoder::new();
    decoder.insert(config);
    (encoder, decoder)
}

fn codec(c: &mut Criterion) {
    let mut encode = c.benchmark_group("encode");
    for (label, sid_len, nonce_len, keyed) in MODES {
        let (mut encoder, _) = setup(sid_len, nonce_len, keyed);
        encode.bench_function(label, |b| b.iter(|| black_box(encoder.generate())));
    }
    encode.finish();

    let mut decode = c.benchmark_group("decode");
    for (label, sid_len, nonce_len, keyed) in MODES {
        let (mut encoder, decoder) = setup(sid_len, nonce_len, keyed);
        let cid = encoder.generate();
        decode.bench_function(label, |b| {
            b.iter(|| black_box(decoder.decode(black_box(&cid))))
        });
    }
    decode.finish();
}

criterion_group!(benches, aes_baselines, codec);
criterion_main!(benches);
