//! Encoding and decoding never touch the heap: a counting global allocator proves it for
//! every mode. The allocator counts every thread of the process, the test harness's too, so
//! the loop is measured in several regions and the quietest one must show zero: an
//! allocation in encode or decode would show in every region.

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

        let mut routed = 0;
        let quietest = (0..5)
            .map(|_| {
                let region = Region::new(GLOBAL);
                for _ in 0..200 {
                    let cid = encoder.generate();
                    routed += usize::from(decoder.decode(&cid).is_ok_and(|d| d.server_id == sid));
                }
                region.change().allocations
            })
            .min();
        routed += usize::from(decoder.decode(&cid).is_ok());

        assert_eq!(routed, 1_001);
        assert_eq!(quietest, Some(0), "allocations in 200 encode+decode");
    }
}
