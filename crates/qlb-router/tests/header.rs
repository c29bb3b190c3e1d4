//! Header parsing: RFC 8999 invariants, v1 and v2 packet types, bounds.

mod support;

use proptest::prelude::*;
use qlb_router::{
    Header, HeaderError, LongPacketType, QUIC_V1, QUIC_V2, ShortHeader, VERSION_NEGOTIATION,
};
use support::{decoder, long_header};

fn parse(datagram: &[u8]) -> Result<Header<'_>, HeaderError> {
    Header::parse(datagram, &decoder())
}

fn long_type(first: u8, version: u32) -> LongPacketType {
    match parse(&long_header(first, version, &[1], &[2], 0)) {
        Ok(Header::Long(header)) => header.packet_type,
        other => panic!("not a long header: {other:?}"),
    }
}

#[test]
fn reads_v1_and_v2_packet_types() {
    use LongPacketType::*;
    let firsts = [0xc0, 0xd0, 0xe0, 0xf0];
    assert_eq!(
        firsts.map(|f| long_type(f, QUIC_V1)),
        [Initial, ZeroRtt, Handshake, Retry]
    );
    assert_eq!(
        firsts.map(|f| long_type(f, QUIC_V2)),
        [Retry, Initial, ZeroRtt, Handshake]
    );
    // The fixed bit and the low four bits do not matter (RFC 9287 greases the fixed bit).
    assert_eq!(long_type(0x8f, QUIC_V1), Initial);
    assert_eq!(long_type(0xc0, VERSION_NEGOTIATION), VersionNegotiation);
    assert_eq!(long_type(0xc0, 0xff00_001d), UnknownVersion);
}

#[test]
fn reads_version_and_both_connection_ids() {
    let datagram = long_header(0xe0, QUIC_V2, &[1, 2, 3], &[4, 5], 40);
    let header = parse(&datagram).expect("valid");
    let Header::Long(long) = header else {
        panic!("{header:?}")
    };
    assert_eq!(long.version, QUIC_V2);
    assert_eq!((long.dcid, long.scid), (&[1, 2, 3][..], &[4, 5][..]));
    assert_eq!(header.dcid(), Some(&[1, 2, 3][..]));
}

#[test]
fn unknown_versions_take_connection_ids_up_to_255_octets() {
    let datagram = long_header(0xc0, 0x0a0a_0a0a, &[7; 255], &[0; 200], 0);
    assert_eq!(
        parse(&datagram)
            .expect("invariant header")
            .dcid()
            .map(<[u8]>::len),
        Some(255)
    );
    let negotiation = long_header(0x80, VERSION_NEGOTIATION, &[1; 40], &[2; 40], 0);
    assert!(parse(&negotiation).is_ok());
}

#[test]
fn v1_and_v2_refuse_connection_ids_over_20_octets() {
    for version in [QUIC_V1, QUIC_V2] {
        assert!(parse(&long_header(0xc0, version, &[0; 20], &[0; 20], 0)).is_ok());
        let long_dcid = long_header(0xc0, version, &[0; 21], &[], 0);
        assert_eq!(parse(&long_dcid), Err(HeaderError::CidTooLong(21)));
        let long_scid = long_header(0xc0, version, &[], &[0; 21], 0);
        assert_eq!(parse(&long_scid), Err(HeaderError::CidTooLong(21)));
    }
}

#[test]
fn every_truncation_of_a_long_header_is_refused() {
    let datagram = long_header(0xc0, QUIC_V1, &[1, 2, 3], &[4, 5], 0);
    assert_eq!(parse(&[]), Err(HeaderError::Empty));
    for len in 1..datagram.len() {
        assert_eq!(
            parse(&datagram[..len]),
            Err(HeaderError::Truncated),
            "{len}"
        );
    }
    assert!(parse(&datagram).is_ok());
}

#[test]
fn short_header_dcid_takes_the_configured_length() {
    // Codepoint 0 is the plaintext config: 1 + 2 + 6 octets.
    let datagram = [0x41, 0x1f, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    assert_eq!(
        parse(&datagram).expect("valid").dcid(),
        Some(&datagram[1..10])
    );
    assert_eq!(parse(&datagram[..9]), Err(HeaderError::Truncated));
    assert_eq!(parse(&[0x40]), Err(HeaderError::Truncated));
}

#[test]
fn short_header_failover_cids_self_encode_their_length() {
    let mut datagram = vec![0x40, 0xe7];
    datagram.extend([9u8; 30]);
    assert_eq!(
        parse(&datagram).expect("valid").dcid().map(<[u8]>::len),
        Some(8)
    );
    // Beyond 20 octets the length bits cannot be a QUIC v1 CID length.
    datagram[1] = 0xff;
    assert_eq!(parse(&datagram).map(|h| h.dcid()), Ok(None));
    assert_eq!(parse(&[0x40, 0xe7, 1, 2]), Err(HeaderError::Truncated));
}

#[test]
fn short_header_without_config_has_no_known_dcid() {
    // Codepoint 3 has no configuration.
    let header = parse(&[0x40, 0x60, 1, 2, 3]).expect("valid");
    assert_eq!(header, Header::Short(ShortHeader { dcid: None }));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn parse_stays_inside_the_datagram(datagram in proptest::collection::vec(any::<u8>(), 0..300)) {
        match parse(&datagram) {
            Ok(Header::Long(long)) => {
                prop_assert_eq!(long.dcid, &datagram[6..6 + long.dcid.len()]);
                let scid_at = 6 + long.dcid.len() + 1;
                prop_assert_eq!(long.scid, &datagram[scid_at..scid_at + long.scid.len()]);
            }
            Ok(Header::Short(short)) => {
                if let Some(dcid) = short.dcid {
                    prop_assert_eq!(dcid, &datagram[1..1 + dcid.len()]);
                }
            }
            Err(HeaderError::Empty) => prop_assert!(datagram.is_empty()),
            Err(_) => prop_assert!(!datagram.is_empty()),
        }
    }
}
