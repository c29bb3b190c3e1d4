//! A [`Pool`] as the program's tables: the same QUIC-LB configurations, server IDs, backends
//! and Maglev slots `qlb-router` decides with, as map entries of one generation.

use qlb_router::{BackendState, Pool};
use quic_lb::{ConfigId, Mode};

use crate::aes_schedule;
use crate::error::XdpError;
use crate::layout::{
    self, CODEPOINTS, ConfigRecord, MAX_BACKENDS, MODE_FOUR_PASS, MODE_PLAINTEXT, MODE_SINGLE_PASS,
    POOL_HASH_KEYED, PoolRecord,
};

/// One generation's entries, ready to write.
pub(crate) struct GenerationTables {
    pub(crate) pool: [u8; 32],
    /// One per codepoint, 0 to 7 (7, the failover codepoint, is always absent).
    pub(crate) configs: Vec<[u8; 360]>,
    pub(crate) server_ids: Vec<([u8; 20], u32)>,
    pub(crate) backends: Vec<[u8; 32]>,
    pub(crate) backend_keys: Vec<([u8; 16], u32)>,
    pub(crate) maglev: Vec<u32>,
}

fn state(state: BackendState) -> u8 {
    match state {
        BackendState::Active => layout::STATE_ACTIVE,
        BackendState::Draining => layout::STATE_DRAINING,
        BackendState::Down => layout::STATE_DOWN,
    }
}

/// The entries of `pool` for `generation`, its Maglev table at `generation * maglev_capacity`
/// in the shared map.
pub(crate) fn build(
    pool: &Pool,
    generation: u32,
    maglev_capacity: u32,
) -> Result<GenerationTables, XdpError> {
    let slots = pool.maglev_slots();
    let maglev_size = u32::try_from(slots.len())
        .ok()
        .filter(|&size| size <= maglev_capacity)
        .ok_or(XdpError::MaglevTooLarge {
            size: slots.len(),
            capacity: maglev_capacity,
        })?;
    let (k0, k1) = pool.hash_key().map_or((0, 0), qlb_router::HashKey::words);
    let pool_record = PoolRecord {
        k0,
        k1,
        maglev_base: generation * maglev_capacity,
        maglev_size,
        flags: if pool.is_hash_keyed() {
            POOL_HASH_KEYED
        } else {
            0
        },
    };

    let configs = (0..CODEPOINTS as u8)
        .map(|codepoint| {
            let config = ConfigId::new(codepoint)
                .ok()
                .and_then(|id| pool.decoder().get(id));
            let record = config.map(|config| {
                let (encryption, decryption) = match config.key() {
                    Some(key) => {
                        let encryption = aes_schedule::encryption(key.as_bytes());
                        (encryption, aes_schedule::decryption(&encryption))
                    }
                    None => ([0; 44], [0; 44]),
                };
                ConfigRecord {
                    mode: match config.mode() {
                        Mode::Plaintext => MODE_PLAINTEXT,
                        Mode::SinglePass => MODE_SINGLE_PASS,
                        Mode::FourPass => MODE_FOUR_PASS,
                    },
                    server_id_len: config.server_id_len() as u8,
                    nonce_len: config.nonce_len() as u8,
                    encryption,
                    decryption,
                }
            });
            layout::config_bytes(record.as_ref())
        })
        .collect();

    let backends = pool.backends();
    if backends.len() > MAX_BACKENDS as usize {
        return Err(XdpError::TooManyBackends(backends.len()));
    }
    let mut server_ids = Vec::new();
    let mut backend_keys = Vec::with_capacity(backends.len());
    let mut backend_records = Vec::with_capacity(backends.len());
    for (index, backend) in (0u32..).zip(backends) {
        for (config_id, server_id) in backend.server_ids() {
            let key = layout::server_id_key(generation, config_id.get(), server_id);
            server_ids.push((key, index));
        }
        backend_keys.push((layout::backend_key(backend.table_key(), generation), index));
        backend_records.push(layout::backend_bytes(Some((
            state(backend.state()),
            backend.address(),
            backend.table_key(),
        ))));
    }
    Ok(GenerationTables {
        pool: pool_record.to_bytes(),
        configs,
        server_ids,
        backends: backend_records,
        backend_keys,
        maglev: slots.iter().map(|index| index.get() as u32).collect(),
    })
}
