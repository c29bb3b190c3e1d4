//! Property tests over random valid configurations.

use std::collections::HashSet;

use proptest::prelude::*;
use quic_lb::{Config, ConfigId, Decoder, Encoder, Key, ServerId};

/// A random valid configuration: codepoint, lengths, key or none, self-encoding on or off.
fn config() -> impl Strategy<Value = Config> {
    (
        0u8..7,
        1usize..=15,
        any::<Option<[u8; 16]>>(),
        any::<bool>(),
    )
        .prop_flat_map(|(id, sid_len, key, self_encoding)| {
            (4usize..=(19 - sid_len)).prop_map(move |nonce_len| {
                Config::new(
                    ConfigId::new(id).expect("0..7"),
                    sid_len,
                    nonce_len,
                    key.map(Key::new),
                )
                .expect("valid by construction")
                .with_length_self_encoding(self_encoding)
            })
        })
}

fn config_and_server_id() -> impl Strategy<Value = (Config, ServerId)> {
    config().prop_flat_map(|config| {
        let len = config.server_id_len();
        proptest::collection::vec(any::<u8>(), len)
            .prop_map(move |sid| (config.clone(), ServerId::new(&sid).expect("valid length")))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_of_encode_is_the_server_id(
        (config, server_id) in config_and_server_id(),
        appended in 0usize..=4,
        trailing in proptest::collection::vec(any::<u8>(), 0..32),
    ) {
        let appended = appended.min(20 - config.cid_len());
        let mut encoder = Encoder::new(config.clone(), server_id)
            .expect("valid")
            .with_appended_octets(appended)
            .expect("fits");
        let mut decoder = Decoder::new();
        decoder.insert(config.clone());
        for _ in 0..8 {
            let cid = encoder.generate();
            prop_assert_eq!(cid.len(), config.cid_len() + appended);
            prop_assert_eq!(cid.codepoint(), Some(config.id().get()));
            if config.length_self_encoding() {
                prop_assert_eq!(usize::from(cid[0] & 0x1f), cid.len() - 1);
            }
            let decoded = decoder.decode(&cid).expect("routable");
            prop_assert_eq!(decoded.server_id, server_id);
            prop_assert_eq!(decoded.config_id, config.id());
            // As a short header: the DCID followed by the rest of the packet.
            let mut packet = cid.to_vec();
            packet.extend_from_slice(&trailing);
            prop_assert_eq!(decoder.decode(&packet).expect("routable").server_id, server_id);
        }
    }

    #[test]
    fn explicit_encode_round_trips_every_nonce(
        (config, server_id) in config_and_server_id(),
        nonce in proptest::collection::vec(any::<u8>(), 18),
    ) {
        let nonce = &nonce[..config.nonce_len()];
        let cid = config.encode(&server_id, nonce, &[], 0).expect("valid");
        let mut decoder = Decoder::new();
        decoder.insert(config);
        prop_assert_eq!(decoder.decode(&cid).expect("routable").server_id, server_id);
    }

    /// An encoder never repeats a CID before exhaustion (the counter itself is checked
    /// exhaustively over a small space in the crate's unit tests).
    #[test]
    fn an_encoder_never_repeats_a_cid((config, server_id) in config_and_server_id()) {
        let mut encoder = Encoder::new(config, server_id).expect("valid");
        let mut seen = HashSet::new();
        for _ in 0..2_000 {
            prop_assert!(seen.insert(encoder.generate()));
        }
        prop_assert!(!encoder.is_exhausted());
    }

    /// Arbitrary bytes never panic the decoder, and a routable answer always names an
    /// installed config.
    #[test]
    fn decode_accepts_arbitrary_bytes(
        configs in proptest::collection::vec(config(), 0..4),
        dcid in proptest::collection::vec(any::<u8>(), 0..40),
    ) {
        let mut decoder = Decoder::new();
        for config in configs {
            decoder.insert(config);
        }
        if let Ok(decoded) = decoder.decode(&dcid) {
            let config = decoder.get(decoded.config_id).expect("installed");
            prop_assert!(dcid.len() >= config.cid_len());
            prop_assert_eq!(decoded.server_id.len(), config.server_id_len());
        }
    }
}
