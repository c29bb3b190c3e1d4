//! Any datagram between any two addresses of one family survives encapsulation, and no
//! input makes decapsulation panic.

use std::net::{IpAddr, SocketAddr};

use proptest::prelude::*;
use qlb_gue::{Ecn, decapsulate, encapsulate, overhead};

fn ecn() -> impl Strategy<Value = Ecn> {
    prop_oneof![
        Just(Ecn::NotEct),
        Just(Ecn::Ect0),
        Just(Ecn::Ect1),
        Just(Ecn::Ce)
    ]
}

fn pair() -> impl Strategy<Value = (SocketAddr, SocketAddr)> {
    prop_oneof![
        (
            any::<[u8; 4]>(),
            any::<u16>(),
            any::<[u8; 4]>(),
            any::<u16>()
        )
            .prop_map(|(a, p, b, q)| (
                SocketAddr::new(IpAddr::from(a), p),
                SocketAddr::new(IpAddr::from(b), q)
            )),
        (
            any::<[u8; 16]>(),
            any::<u16>(),
            any::<[u8; 16]>(),
            any::<u16>()
        )
            .prop_map(|(a, p, b, q)| (
                SocketAddr::new(IpAddr::from(a), p),
                SocketAddr::new(IpAddr::from(b), q)
            )),
    ]
}

proptest! {
    #[test]
    fn round_trip((source, destination) in pair(), ecn in ecn(), payload in prop::collection::vec(any::<u8>(), 0..1500)) {
        let mut out = vec![0xaa; 3];
        encapsulate(&mut out, source, destination, ecn, &payload).expect("fits");
        prop_assert_eq!(out.len(), 3 + overhead(source) + payload.len());
        let inner = decapsulate(&out[3..]).expect("decapsulates");
        prop_assert_eq!(inner.source, source);
        prop_assert_eq!(inner.destination, destination);
        prop_assert_eq!(inner.ecn, ecn);
        prop_assert_eq!(inner.payload, &payload[..]);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        let _ = decapsulate(&bytes);
    }
}
