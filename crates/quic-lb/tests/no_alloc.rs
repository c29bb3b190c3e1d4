//! Encoding and decoding never touch the heap: a counting global allocator proves it for
//! every mode. (Its own test binary, so no other test's allocations are counted.)

use quic_lb::{Config, ConfigId, Decoder, Encoder, Key};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<std::alloc::System> = &INSTRUMENTED_SYSTEM;

#[test]
fn encode_and_decode_do_not_allocate() {
    let key = Some(Key::new([0x11; 16]));
    let configs = [
        Config::new(ConfigId::new(0).expect("id"), 2, 6, None),
        Config::new(ConfigId::new(1).expect("id"), 8, 8, key.clone()),
        Config::new(ConfigId::new(2).expect("id"), 3, 4, key.clone()),
        Config::new(ConfigId::new(3).expect("id"), 10, 8, key),
    ];
    for config in configs {
        let config = config.expect("valid");
        let sid = quic_lb::ServerId::new(&vec![7; config.server_id_len()]).expect("sid");
        let mut encoder = Encoder::new(config.clone(), sid)
            .expect("valid")
            .with_appended_octets(1)
            .expect("fits");
        let mut decoder = Decoder::new();
        decoder.insert(config);
        // The thread-local random generator is set up on first use; warm it up.
        let cid = encoder.generate();

        let region = Region::new(GLOBAL);
        let mut routed = 0;
        for _ in 0..1_000 {
            let cid = encoder.generate();
            routed += usize::from(decoder.decode(&cid).is_ok_and(|d| d.server_id == sid));
        }
        routed += usize::from(decoder.decode(&cid).is_ok());
        let allocations = region.change().allocations;

        assert_eq!(routed, 1_001);
        assert_eq!(allocations, 0, "allocations in 1000 encode+decode");
    }
}
