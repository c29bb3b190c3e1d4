//! Arbitrary datagrams from arbitrary addresses at arbitrary times through a router with a
//! plaintext and two keyed QUIC-LB configs, four backends in arbitrary states, and pool swaps
//! between packets. The router must never panic, must honour backend states, must route every
//! CID a serving backend issued to that backend, and its counters must add up.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use qlb_router::{Backend, BackendState, Decision, Pool, Route, Router, TableLimits};
use quic_lb::{Config, ConfigId, Decoder, Encoder, Key};

const BACKENDS: u8 = 4;

#[derive(Arbitrary, Debug)]
struct Client {
    ip: [u8; 16],
    port: u16,
    v4: bool,
}

impl Client {
    fn address(&self) -> SocketAddr {
        if self.v4 {
            let [a, b, c, d, ..] = self.ip;
            SocketAddr::from(([a, b, c, d], self.port))
        } else {
            SocketAddr::from((self.ip, self.port))
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Step {
    /// Raw bytes.
    Datagram {
        bytes: Vec<u8>,
        client: Client,
        millis: u32,
    },
    /// A CID that backend `backend` issued under config `config`, in a short header (or a v1
    /// Handshake), followed by `tail`: keyed CIDs are out of reach of byte mutation.
    Issued {
        config: u8,
        backend: u8,
        long: bool,
        tail: Vec<u8>,
        client: Client,
        millis: u32,
    },
    /// A new pool: backend states, two bits each.
    Swap { states: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    states: u8,
    steps: Vec<Step>,
}

fn configs() -> [Config; 3] {
    let config = |id, sid, nonce, key: Option<[u8; 16]>| {
        Config::new(
            ConfigId::new(id).expect("id"),
            sid,
            nonce,
            key.map(Key::new),
        )
        .expect("config")
    };
    [
        config(0, 2, 6, None),
        config(1, 4, 12, Some([1; 16])),
        config(2, 3, 5, Some([2; 16])),
    ]
}

fn state(states: u8, backend: u8) -> BackendState {
    match (states >> (2 * backend)) & 0b11 {
        0 | 1 => BackendState::Active,
        2 => BackendState::Draining,
        _ => BackendState::Down,
    }
}

/// The pool for `states`; all 256 are built once, so inputs spend their time routing.
fn pool(states: u8) -> Arc<Pool> {
    static POOLS: OnceLock<Vec<Arc<Pool>>> = OnceLock::new();
    let pools = POOLS.get_or_init(|| (0..=u8::MAX).map(build_pool).collect());
    Arc::clone(&pools[usize::from(states)])
}

fn build_pool(states: u8) -> Arc<Pool> {
    let mut decoder = Decoder::new();
    configs().into_iter().for_each(|config| {
        decoder.insert(config);
    });
    let backends = (0..BACKENDS).map(|n| {
        let address = SocketAddr::from(([10, 0, 0, n + 1], 4433));
        configs()
            .iter()
            .fold(Backend::new(format!("b{n}"), address), |backend, config| {
                let mut sid = vec![0; config.server_id_len()];
                sid[0] = n + 1;
                backend.with_server_id(config.id(), quic_lb::ServerId::new(&sid).expect("sid"))
            })
            .with_weight(u32::from(n) + 1)
            .with_state(state(states, n))
    });
    Arc::new(Pool::with_maglev_size(decoder, backends, 251).expect("valid pool"))
}

/// At least the longest header `issued` makes (1 + 4 + 1 + 20 + 1 octets) and a one-octet
/// Length, then 4 + 16 octets.
const MIN_ISSUED_LEN: usize = 27 + 1 + 20;

fn issued(config: u8, backend: u8, long: bool, tail: &[u8]) -> (Vec<u8>, u8) {
    let configs = configs();
    let config = &configs[usize::from(config) % configs.len()];
    let backend = backend % BACKENDS;
    let mut sid = vec![0; config.server_id_len()];
    sid[0] = backend + 1;
    let server_id = quic_lb::ServerId::new(&sid).expect("sid");
    let cid = Encoder::new(config.clone(), server_id)
        .expect("encoder")
        .generate();
    let mut datagram = if long {
        let mut header = vec![0xe0, 0, 0, 0, 1, cid.len() as u8];
        header.extend_from_slice(&cid);
        header.push(0);
        header
    } else {
        let mut header = vec![0x40];
        header.extend_from_slice(&cid);
        header
    };
    datagram.extend_from_slice(tail);
    // Room for a packet number and a header-protection sample whatever the tail: shorter
    // datagrams are dropped as too short, which the free-form steps exercise.
    datagram.resize(datagram.len().max(MIN_ISSUED_LEN), 0);
    (datagram, backend)
}

fuzz_target!(|input: Input| {
    let limits = TableLimits {
        capacity: 8,
        idle_timeout: Duration::from_secs(30),
    };
    let mut states = input.states;
    let mut router = Router::with_limits(pool(states), limits);
    let start = Instant::now();
    let (mut decisions, mut forwarded, mut bytes) = (0u64, 0u64, 0u64);
    for step in &input.steps {
        let (datagram, client, millis, issuer) = match step {
            Step::Swap { states: new } => {
                states = *new;
                router.set_pool(pool(states));
                continue;
            }
            Step::Datagram {
                bytes,
                client,
                millis,
            } => (bytes.clone(), client, millis, None),
            Step::Issued {
                config,
                backend,
                long,
                tail,
                client,
                millis,
            } => {
                let (datagram, backend) = issued(*config, *backend, *long, tail);
                (datagram, client, millis, Some(backend))
            }
        };
        let now = start + Duration::from_millis(u64::from(*millis));
        let decision = router.route(&datagram, client.address(), now);
        decisions += 1;
        if let Decision::Forward(forward) = decision {
            let backend = router.pool().backend(forward.backend).expect("in the pool");
            assert_eq!(backend.address(), forward.address);
            assert!(backend.state().serves_existing_connections());
            if forward.route == Route::Fallback {
                assert!(backend.state().takes_new_connections());
            }
            forwarded += 1;
            bytes += datagram.len() as u64;
        }
        if let Some(issuer) = issuer
            && state(states, issuer).serves_existing_connections()
        {
            let forward = decision
                .forward()
                .expect("a serving backend's CID is forwarded");
            assert_eq!(forward.route, Route::Cid);
            let name = router
                .pool()
                .backend(forward.backend)
                .map(|b| b.name().to_owned());
            assert_eq!(name, Some(format!("b{issuer}")));
        }
    }
    let counters = router.counters();
    assert_eq!(counters.decisions(), decisions);
    assert_eq!(
        Route::ALL.iter().map(|&r| counters.routed(r)).sum::<u64>(),
        forwarded
    );
    let traffic = counters
        .backends()
        .fold((0, 0), |(p, b), (_, t)| (p + t.packets, b + t.bytes));
    assert_eq!(traffic, (forwarded, bytes));
});
