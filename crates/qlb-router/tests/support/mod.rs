//! Shared by the integration tests and the benchmark: QUIC-LB configurations, backends and
//! datagrams built the way clients and servers build them.
#![allow(dead_code)] // Each test binary uses its own part.

use std::net::SocketAddr;

use qlb_router::{Backend, BackendState, Pool};
use quic_lb::{Config, ConfigId, ConnectionId, Decoder, Encoder, Key, ServerId};

pub(crate) const QUIC_V1: u32 = 1;

/// Plaintext, single-pass and four-pass configurations at codepoints 0, 1 and 2.
pub(crate) fn configs() -> [Config; 3] {
    let config = |id, sid_len, nonce_len, key: Option<Key>| {
        Config::new(ConfigId::new(id).expect("id"), sid_len, nonce_len, key).expect("config")
    };
    [
        config(0, 2, 6, None),
        config(1, 4, 12, Some(Key::new([0x11; 16]))),
        config(2, 3, 5, Some(Key::new([0x22; 16]))),
    ]
}

pub(crate) fn decoder() -> Decoder {
    let mut decoder = Decoder::new();
    for config in configs() {
        decoder.insert(config);
    }
    decoder
}

/// The server ID of backend number `n` under `config`: `n` in the last octet.
pub(crate) fn server_id(config: &Config, n: u8) -> ServerId {
    let mut octets = vec![0u8; config.server_id_len()];
    if let Some(last) = octets.last_mut() {
        *last = n;
    }
    ServerId::new(&octets).expect("server id")
}

/// Backend number `n`, named `b{n}`, at 10.0.0.n:4433, with a server ID under every config.
pub(crate) fn backend(n: u8, state: BackendState) -> Backend {
    let address = SocketAddr::from(([10, 0, 0, n], 4433));
    configs()
        .iter()
        .fold(Backend::new(format!("b{n}"), address), |backend, config| {
            backend.with_server_id(config.id(), server_id(config, n))
        })
        .with_state(state)
}

/// A pool over backends `numbers`, all active.
pub(crate) fn pool(numbers: impl IntoIterator<Item = u8>) -> Pool {
    Pool::new(
        decoder(),
        numbers
            .into_iter()
            .map(|n| backend(n, BackendState::Active)),
    )
    .expect("valid pool")
}

/// An encoder issuing CIDs for backend `n` under `config`.
pub(crate) fn encoder(config: &Config, n: u8) -> Encoder {
    Encoder::new(config.clone(), server_id(config, n)).expect("encoder")
}

/// A short-header datagram: first octet, DCID, then a packet number and 30 payload octets.
pub(crate) fn short_header(dcid: &[u8]) -> Vec<u8> {
    let mut datagram = vec![0x40];
    datagram.extend_from_slice(dcid);
    datagram.extend_from_slice(&[0x5a; 31]);
    datagram
}

/// A long-header datagram of `len` octets (at least the header).
pub(crate) fn long_header(
    first: u8,
    version: u32,
    dcid: &[u8],
    scid: &[u8],
    len: usize,
) -> Vec<u8> {
    let mut datagram = vec![first];
    datagram.extend_from_slice(&version.to_be_bytes());
    for cid in [dcid, scid] {
        datagram.push(u8::try_from(cid.len()).expect("cid length"));
        datagram.extend_from_slice(cid);
    }
    let header_len = datagram.len();
    datagram.resize(len.max(header_len), 0);
    datagram
}

/// A client's v1 Initial, padded to 1200 octets as RFC 9000 requires.
pub(crate) fn initial(dcid: &[u8]) -> Vec<u8> {
    long_header(0xc0, QUIC_V1, dcid, &[0xcc; 8], 1200)
}

/// A client-chosen DCID: 8 octets from `n`, which no configuration decodes (codepoint 7).
pub(crate) fn client_dcid(n: u32) -> ConnectionId {
    let mut octets = [0xe7; 8];
    octets[4..].copy_from_slice(&n.to_be_bytes());
    ConnectionId::new(&octets).expect("8 octets")
}

/// Client number `n`.
pub(crate) fn client(n: u32) -> SocketAddr {
    let [a, b, c, d] = n.to_be_bytes();
    SocketAddr::from(([100, a, b, c], 1024 + u16::from(d)))
}
