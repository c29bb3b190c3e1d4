//! Arbitrary bytes as a received GUE packet: decapsulation must never panic, and whatever it
//! accepts must encapsulate back to the same inner datagram.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let Ok(inner) = qlb_gue::decapsulate(bytes) else {
        return;
    };
    let mut again = Vec::new();
    qlb_gue::encapsulate(&mut again, inner.source, inner.destination, inner.ecn, inner.payload)
        .expect("what was read fits again");
    let reread = qlb_gue::decapsulate(&again).expect("canonical packets read back");
    assert_eq!(reread, inner);
});
