//! Arbitrary configurations and arbitrary bytes into the QUIC-LB decoder: it must never
//! panic, and whatever it calls routable must round-trip through an encoder.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use quic_lb::{Config, ConfigId, Decoder, Encoder, Key};

#[derive(Arbitrary, Debug)]
struct RawConfig {
    id: u8,
    server_id_len: u8,
    nonce_len: u8,
    key: Option<[u8; 16]>,
}

#[derive(Arbitrary, Debug)]
struct Input {
    configs: Vec<RawConfig>,
    dcid: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let mut decoder = Decoder::new();
    for raw in &input.configs {
        // Invalid parameters must be refused, never accepted or panicked on.
        let Ok(id) = ConfigId::new(raw.id) else { continue };
        let Ok(config) = Config::new(
            id,
            usize::from(raw.server_id_len),
            usize::from(raw.nonce_len),
            raw.key.map(Key::new),
        ) else {
            continue;
        };
        decoder.insert(config);
    }
    if let Ok(decoded) = decoder.decode(&input.dcid) {
        let config = decoder.get(decoded.config_id).expect("decoded under an installed config");
        assert!(input.dcid.len() >= config.cid_len());
        assert_eq!(decoded.server_id.len(), config.server_id_len());
        // A fresh CID for the decoded server ID decodes to it again.
        let mut encoder = Encoder::new(config.clone(), decoded.server_id).expect("valid");
        let cid = encoder.generate();
        assert_eq!(decoder.decode(&cid).map(|d| d.server_id), Ok(decoded.server_id));
    }
});
