//! The backend set as one immutable, validated snapshot: the backends sorted by name, the
//! QUIC-LB decoder, server ID -> backend per configuration, and the Maglev table. Built once
//! per change in the control plane and shared by every worker's [`Router`](crate::Router).

use std::collections::HashMap;

use quic_lb::{ConfigId, Decoder, ServerId};
use thiserror::Error;

use std::net::SocketAddr;

use crate::backend::{Backend, BackendIndex, BackendKey};
use crate::hash::{HashKey, address_hash, key_hash};
use crate::maglev::{Maglev, Member};
use crate::server_ids::ServerIdMap;

/// Why a backend set is refused. Each message starts with the field at fault, `backend[i]`
/// counting from 0 in the order the backends were given.
///
/// ```
/// use qlb_router::{Backend, Pool};
///
/// let err = Pool::new(quic_lb::Decoder::new(), [
///     Backend::new("a", "192.0.2.1:443".parse()?),
///     Backend::new("b", "192.0.2.2:443".parse()?).with_weight(0),
/// ]).unwrap_err();
/// assert_eq!(err.to_string(), "backend[1].weight: must be at least 1");
/// # Ok::<(), std::net::AddrParseError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug, Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A backend without a name.
    #[error("backend[{index}].name: must not be empty")]
    EmptyName {
        /// The backend's position in the input.
        index: usize,
    },
    /// Two backends with one name.
    #[error("backend[{index}].name: \"{name}\" is also the name of backend[{first}]")]
    DuplicateName {
        /// The backend's position in the input.
        index: usize,
        /// The name.
        name: String,
        /// The position of the backend that has it first.
        first: usize,
    },
    /// Two names with one 64-bit flow table key (a hash collision: rename one).
    #[error(
        "backend[{index}].name: \"{name}\" hashes to the flow table key of backend[{first}]'s name; rename one"
    )]
    NameKeyCollision {
        /// The backend's position in the input.
        index: usize,
        /// The name.
        name: String,
        /// The position of the backend whose name has the key first.
        first: usize,
    },
    /// An address no datagram can be sent to.
    #[error("backend[{index}].address: {address} is not a unicast destination with a port")]
    Address {
        /// The backend's position in the input.
        index: usize,
        /// The address.
        address: std::net::SocketAddr,
    },
    /// Weight 0.
    #[error("backend[{index}].weight: must be at least 1")]
    Weight {
        /// The backend's position in the input.
        index: usize,
    },
    /// A server ID for a configuration the decoder does not have.
    #[error("backend[{index}].server_id: no QUIC-LB config with id {config_id}")]
    UnknownConfig {
        /// The backend's position in the input.
        index: usize,
        /// The configuration named.
        config_id: ConfigId,
    },
    /// A server ID whose length is not the configuration's.
    #[error(
        "backend[{index}].server_id: config {config_id} takes {expected}-octet server ids, got {server_id} ({got} octets)"
    )]
    ServerIdLen {
        /// The backend's position in the input.
        index: usize,
        /// The configuration.
        config_id: ConfigId,
        /// The configuration's `server_id_len`.
        expected: usize,
        /// The server ID length given.
        got: usize,
        /// The server ID.
        server_id: ServerId,
    },
    /// Two backends with one server ID under one configuration.
    #[error(
        "backend[{index}].server_id: {server_id} (config {config_id}) is also held by backend[{first}]"
    )]
    DuplicateServerId {
        /// The backend's position in the input.
        index: usize,
        /// The configuration.
        config_id: ConfigId,
        /// The server ID.
        server_id: ServerId,
        /// The position of the backend that holds it first.
        first: usize,
    },
    /// More backends than a pool holds.
    #[error("backends: at most {max} backends, got {got}")]
    TooManyBackends {
        /// The limit, [`Pool::MAX_BACKENDS`].
        max: usize,
        /// The number given.
        got: usize,
    },
    /// A Maglev table size that is not a prime in range.
    #[error("maglev_size: must be a prime from 2 to {max}, got {got}")]
    MaglevSize {
        /// The largest size accepted, [`Pool::MAX_MAGLEV_SIZE`].
        max: usize,
        /// The size given.
        got: usize,
    },
}

/// An immutable, validated backend set with everything routing reads from it. Share it with
/// `Arc`; a [`Router`](crate::Router) swaps it in with [`Router::set_pool`](crate::Router::set_pool).
///
/// Backends are kept sorted by name, so the order they are given in changes nothing: two pools
/// built from the same backends make the same decisions, in any process.
///
/// An empty pool is valid: every packet it cannot route by a table is dropped with
/// [`DropReason::NoBackend`](crate::DropReason::NoBackend).
///
/// ```
/// use qlb_router::{Backend, BackendState, Pool};
/// use quic_lb::{Config, ConfigId, Decoder};
///
/// let mut decoder = Decoder::new();
/// decoder.insert(Config::new(ConfigId::new(0)?, 1, 6, None)?);
/// let pool = Pool::new(decoder, [
///     Backend::new("b", "192.0.2.2:443".parse()?).with_server_id(ConfigId::new(0)?, "02".parse()?),
///     Backend::new("a", "192.0.2.1:443".parse()?).with_server_id(ConfigId::new(0)?, "01".parse()?),
/// ])?;
/// let names: Vec<&str> = pool.backends().iter().map(|b| b.name()).collect();
/// assert_eq!(names, ["a", "b"]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Pool {
    backends: Box<[Backend]>,
    /// Flow table key -> backend, sorted by key.
    keys: Box<[(BackendKey, BackendIndex)]>,
    decoder: Decoder,
    server_ids: [ServerIdMap; ConfigId::COUNT],
    maglev: Maglev,
    /// Keys the fallback hash; `None`: the fixed-key hash.
    hash_key: Option<HashKey>,
}

/// What a fallback choice is keyed by.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FallbackKey<'a> {
    /// A long header's DCID, which the client keeps for its whole first flight.
    Dcid(&'a [u8]),
    /// The client address (short headers, empty DCIDs).
    Address(SocketAddr),
}

/// A backend chosen from a pool, with its index there.
pub(crate) type Chosen<'a> = (BackendIndex, &'a Backend);

impl Pool {
    /// The default Maglev table size: a prime well above 100 times any plausible backend
    /// count, as the Maglev paper advises for even shares.
    pub const DEFAULT_MAGLEV_SIZE: usize = 65537;
    /// The largest Maglev table size accepted (a prime; 4 MB of table).
    pub const MAX_MAGLEV_SIZE: usize = 1_000_003;
    /// The most backends a pool holds.
    pub const MAX_BACKENDS: usize = 65536;

    /// Validates `backends` against `decoder` and builds the pool, with a Maglev table of
    /// [`Pool::DEFAULT_MAGLEV_SIZE`] slots.
    ///
    /// ```
    /// use qlb_router::{Backend, Pool};
    ///
    /// let pool = Pool::new(quic_lb::Decoder::new(), [Backend::new("a", "192.0.2.1:443".parse()?)])?;
    /// assert_eq!(pool.backends().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(
        decoder: Decoder,
        backends: impl IntoIterator<Item = Backend>,
    ) -> Result<Self, PoolError> {
        Self::with_maglev_size(decoder, backends, Self::DEFAULT_MAGLEV_SIZE)
    }

    /// As [`Pool::new`], with a Maglev table of `maglev_size` slots: a prime, larger for
    /// more even shares, smaller for a cheaper build.
    ///
    /// ```
    /// use qlb_router::{Backend, Pool};
    ///
    /// let backends = || [Backend::new("a", "192.0.2.1:443".parse().unwrap())];
    /// assert!(Pool::with_maglev_size(quic_lb::Decoder::new(), backends(), 251).is_ok());
    /// let err = Pool::with_maglev_size(quic_lb::Decoder::new(), backends(), 250).unwrap_err();
    /// assert!(err.to_string().starts_with("maglev_size:"));
    /// ```
    pub fn with_maglev_size(
        decoder: Decoder,
        backends: impl IntoIterator<Item = Backend>,
        maglev_size: usize,
    ) -> Result<Self, PoolError> {
        if !(2..=Self::MAX_MAGLEV_SIZE).contains(&maglev_size) || !is_prime(maglev_size) {
            return Err(PoolError::MaglevSize {
                max: Self::MAX_MAGLEV_SIZE,
                got: maglev_size,
            });
        }
        let mut backends: Vec<Backend> = backends.into_iter().collect();
        validate(&decoder, &backends)?;
        // Names are unique: the order is total, whatever order the backends came in.
        backends.sort_unstable_by(|a, b| a.name().cmp(b.name()));
        let server_ids = server_id_maps(&backends);
        let mut keys: Vec<(BackendKey, BackendIndex)> = (0..)
            .zip(&backends)
            .map(|(index, backend)| (backend.key(), BackendIndex::new(index)))
            .collect();
        keys.sort_unstable();
        let members: Vec<Member<'_>> = backends
            .iter()
            .enumerate()
            .filter(|(_, backend)| backend.state().takes_new_connections())
            .map(|(index, backend)| Member {
                name: backend.name(),
                weight: backend.weight(),
                index: BackendIndex::new(index),
            })
            .collect();
        let maglev = Maglev::build(&members, maglev_size);
        Ok(Self {
            backends: backends.into(),
            keys: keys.into(),
            decoder,
            server_ids,
            maglev,
            hash_key: None,
        })
    }

    /// Keys the fallback hash of DCIDs and client addresses with `key`: every load balancer
    /// with the same key and backends still makes the same choices, but a client without
    /// the key cannot tell which backend a DCID lands on. Without a key the hash is fixed
    /// (and public).
    ///
    /// ```
    /// use qlb_router::{Backend, HashKey, Pool};
    ///
    /// let pool = Pool::new(quic_lb::Decoder::new(), [Backend::new("a", "192.0.2.1:443".parse()?)])?
    ///     .with_hash_key(HashKey::new([7; 16]));
    /// assert!(pool.is_hash_keyed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_hash_key(mut self, key: HashKey) -> Self {
        self.hash_key = Some(key);
        self
    }

    /// Whether [`Pool::with_hash_key`] keyed the fallback hash.
    pub fn is_hash_keyed(&self) -> bool {
        self.hash_key.is_some()
    }

    /// The key of the fallback hash, if [`Pool::with_hash_key`] set one: for a data path
    /// outside this process (the XDP program) that must hash alike.
    ///
    /// ```
    /// use qlb_router::{HashKey, Pool};
    ///
    /// let pool = Pool::new(quic_lb::Decoder::new(), [])?.with_hash_key(HashKey::new([7; 16]));
    /// assert_eq!(pool.hash_key(), Some(&HashKey::new([7; 16])));
    /// # Ok::<(), qlb_router::PoolError>(())
    /// ```
    pub fn hash_key(&self) -> Option<&HashKey> {
        self.hash_key.as_ref()
    }

    /// The Maglev table: slot `s` holds the backend a fallback hash `h` picks when
    /// `(h * len) >> 64 == s`. Empty when no backend takes new connections. For a data path
    /// outside this process (the XDP program) that must choose alike.
    ///
    /// ```
    /// use qlb_router::{Backend, Pool};
    ///
    /// let pool = Pool::with_maglev_size(quic_lb::Decoder::new(), [Backend::new("a", "192.0.2.1:443".parse()?)], 251)?;
    /// assert_eq!(pool.maglev_slots().len(), 251);
    /// assert!(pool.maglev_slots().iter().all(|index| index.get() == 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn maglev_slots(&self) -> &[BackendIndex] {
        self.maglev.slots()
    }

    /// The backends, sorted by name; a [`BackendIndex`] is a position here.
    ///
    /// ```
    /// use qlb_router::{Backend, Pool};
    ///
    /// let pool = Pool::new(quic_lb::Decoder::new(), [])?;
    /// assert!(pool.backends().is_empty());
    /// # Ok::<(), qlb_router::PoolError>(())
    /// ```
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }

    /// The backend at `index`.
    ///
    /// ```
    /// use qlb_router::{Backend, Pool};
    ///
    /// let pool = Pool::new(quic_lb::Decoder::new(), [Backend::new("a", "192.0.2.1:443".parse()?)])?;
    /// let index = pool.find("a").expect("present");
    /// assert_eq!(pool.backend(index).map(|b| b.address().port()), Some(443));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backend(&self, index: BackendIndex) -> Option<&Backend> {
        self.backends.get(index.get())
    }

    /// The index of the backend called `name`.
    ///
    /// ```
    /// use qlb_router::{Backend, Pool};
    ///
    /// let pool = Pool::new(quic_lb::Decoder::new(), [Backend::new("a", "192.0.2.1:443".parse()?)])?;
    /// assert!(pool.find("a").is_some());
    /// assert!(pool.find("z").is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn find(&self, name: &str) -> Option<BackendIndex> {
        self.backends
            .binary_search_by(|backend| backend.name().cmp(name))
            .ok()
            .map(BackendIndex::new)
    }

    /// The QUIC-LB decoder: its configurations also give short-header DCID lengths.
    ///
    /// ```
    /// use qlb_router::Pool;
    ///
    /// let pool = Pool::new(quic_lb::Decoder::new(), [])?;
    /// assert_eq!(pool.decoder().configs().count(), 0);
    /// # Ok::<(), qlb_router::PoolError>(())
    /// ```
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The backend a routable DCID names, if it serves existing connections, and the
    /// codepoint it was decoded under; `None` makes the DCID unroutable (draft section 4.1:
    /// a server ID not mapped to an active server).
    #[inline]
    pub(crate) fn route_by_cid(&self, dcid: &[u8]) -> Option<(Chosen<'_>, ConfigId)> {
        // Read in place: moving the result would load the server ID with wide loads from
        // where `decode` has just written it with narrow stores, which stalls.
        let decoded = self.decoder.decode(dcid);
        let Ok(decoded) = &decoded else {
            return None;
        };
        let index = self
            .server_ids
            .get(usize::from(decoded.config_id.get()))?
            .get(&decoded.server_id)?;
        Some((self.serving(index)?, decoded.config_id))
    }

    /// The backend a flow table entry names, if it is in this pool.
    pub(crate) fn find_key(&self, key: BackendKey) -> Option<BackendIndex> {
        let found = self.keys.binary_search_by_key(&key, |&(key, _)| key).ok()?;
        self.keys.get(found).map(|&(_, index)| index)
    }

    /// The backend at `index`, if it serves existing connections.
    pub(crate) fn serving(&self, index: BackendIndex) -> Option<Chosen<'_>> {
        let backend = self.backend(index)?;
        backend
            .state()
            .serves_existing_connections()
            .then_some((index, backend))
    }

    /// The Maglev choice for a fallback key (a DCID, else the client address), among the
    /// backends that take new connections.
    pub(crate) fn fallback(&self, fallback_key: FallbackKey<'_>) -> Option<Chosen<'_>> {
        let key = self.hash_key.as_ref();
        let hash = match fallback_key {
            FallbackKey::Dcid(dcid) => key_hash(key, dcid),
            FallbackKey::Address(address) => address_hash(key, address),
        };
        let index = self.maglev.lookup(hash)?;
        Some((index, self.backend(index)?))
    }
}

fn validate(decoder: &Decoder, backends: &[Backend]) -> Result<(), PoolError> {
    if backends.len() > Pool::MAX_BACKENDS {
        return Err(PoolError::TooManyBackends {
            max: Pool::MAX_BACKENDS,
            got: backends.len(),
        });
    }
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut keys: HashMap<BackendKey, usize> = HashMap::new();
    let mut server_ids: HashMap<(ConfigId, ServerId), usize> = HashMap::new();
    for (index, backend) in backends.iter().enumerate() {
        if backend.name().is_empty() {
            return Err(PoolError::EmptyName { index });
        }
        if let Some(&first) = names.get(backend.name()) {
            return Err(PoolError::DuplicateName {
                index,
                name: backend.name().to_owned(),
                first,
            });
        }
        names.insert(backend.name(), index);
        if let Some(&first) = keys.get(&backend.key()) {
            return Err(PoolError::NameKeyCollision {
                index,
                name: backend.name().to_owned(),
                first,
            });
        }
        keys.insert(backend.key(), index);
        let address = backend.address();
        if address.port() == 0 || address.ip().is_unspecified() || address.ip().is_multicast() {
            return Err(PoolError::Address { index, address });
        }
        if backend.weight() == 0 {
            return Err(PoolError::Weight { index });
        }
        for (config_id, &server_id) in backend.server_ids() {
            let config = decoder
                .get(config_id)
                .ok_or(PoolError::UnknownConfig { index, config_id })?;
            if server_id.len() != config.server_id_len() {
                return Err(PoolError::ServerIdLen {
                    index,
                    config_id,
                    expected: config.server_id_len(),
                    got: server_id.len(),
                    server_id,
                });
            }
            if let Some(&first) = server_ids.get(&(config_id, server_id)) {
                return Err(PoolError::DuplicateServerId {
                    index,
                    config_id,
                    server_id,
                    first,
                });
            }
            server_ids.insert((config_id, server_id), index);
        }
    }
    Ok(())
}

/// Server ID -> backend index, one sorted map per configuration; `backends` are validated.
fn server_id_maps(backends: &[Backend]) -> [ServerIdMap; ConfigId::COUNT] {
    let mut entries: [Vec<(ServerId, BackendIndex)>; ConfigId::COUNT] = Default::default();
    for (index, backend) in backends.iter().enumerate() {
        for (config_id, &server_id) in backend.server_ids() {
            if let Some(list) = entries.get_mut(usize::from(config_id.get())) {
                list.push((server_id, BackendIndex::new(index)));
            }
        }
    }
    entries.map(|list| ServerIdMap::new(&list))
}

fn is_prime(n: usize) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendState;
    use quic_lb::Config;

    fn config_id(id: u8) -> ConfigId {
        ConfigId::new(id).expect("id")
    }

    fn decoder() -> Decoder {
        let mut decoder = Decoder::new();
        decoder.insert(Config::new(config_id(0), 2, 4, None).expect("config"));
        decoder
    }

    fn backend(name: &str, sid: &str) -> Backend {
        Backend::new(name, "192.0.2.1:443".parse().expect("address"))
            .with_server_id(config_id(0), sid.parse().expect("sid"))
    }

    fn refusal(backends: Vec<Backend>) -> String {
        Pool::with_maglev_size(decoder(), backends, 7)
            .expect_err("refused")
            .to_string()
    }

    #[test]
    fn refuses_bad_backends_naming_the_field() {
        let unspecified = Backend::new("c", "0.0.0.0:443".parse().expect("address"));
        let no_port = Backend::new("c", "192.0.2.1:0".parse().expect("address"));
        let cases = [
            (
                vec![backend("", "0001")],
                "backend[0].name: must not be empty",
            ),
            (
                vec![backend("a", "0001"), backend("a", "0002")],
                "backend[1].name: \"a\" is also the name of backend[0]",
            ),
            (
                vec![backend("a", "0001"), unspecified],
                "backend[1].address: 0.0.0.0:443 is not a unicast destination with a port",
            ),
            (
                vec![no_port],
                "backend[0].address: 192.0.2.1:0 is not a unicast destination with a port",
            ),
            (
                vec![backend("a", "0001").with_weight(0)],
                "backend[0].weight: must be at least 1",
            ),
            (
                vec![backend("a", "000102")],
                "backend[0].server_id: config 0 takes 2-octet server ids, got 000102 (3 octets)",
            ),
            (
                vec![backend("a", "0001").with_server_id(config_id(3), "01".parse().expect("sid"))],
                "backend[0].server_id: no QUIC-LB config with id 3",
            ),
            (
                vec![
                    backend("a", "0001"),
                    backend("b", "0002"),
                    backend("c", "0001"),
                ],
                "backend[2].server_id: 0001 (config 0) is also held by backend[0]",
            ),
        ];
        for (backends, message) in cases {
            assert_eq!(refusal(backends), message);
        }
    }

    #[test]
    fn refuses_maglev_sizes_that_are_not_prime() {
        for size in [0, 1, 4, 65536, Pool::MAX_MAGLEV_SIZE + 2] {
            let err = Pool::with_maglev_size(decoder(), [], size).expect_err("refused");
            assert!(err.to_string().starts_with("maglev_size:"), "{err}");
        }
        for size in [2, 3, 251, 65537, Pool::MAX_MAGLEV_SIZE] {
            assert!(
                Pool::with_maglev_size(decoder(), [], size).is_ok(),
                "{size}"
            );
        }
    }

    #[test]
    fn refuses_too_many_backends() {
        let address = "192.0.2.1:443".parse().expect("address");
        let many = (0..=Pool::MAX_BACKENDS).map(|i| Backend::new(i.to_string(), address));
        let err = Pool::with_maglev_size(decoder(), many, 7).expect_err("refused");
        assert_eq!(
            err.to_string(),
            "backends: at most 65536 backends, got 65537"
        );
    }

    #[test]
    fn maps_server_ids_to_serving_backends() {
        let pool = Pool::with_maglev_size(
            decoder(),
            [
                backend("c", "0003").with_state(BackendState::Down),
                backend("b", "0002").with_state(BackendState::Draining),
                backend("a", "0001"),
            ],
            7,
        )
        .expect("valid");
        let route = |cid: &[u8]| pool.route_by_cid(cid).map(|((index, _), _)| index);
        let cid = |sid: u8| [0x00, 0x00, sid, 9, 9, 9, 9];
        assert_eq!(route(&cid(1)), pool.find("a"));
        assert_eq!(route(&cid(2)), pool.find("b"));
        assert_eq!(route(&cid(3)), None, "down");
        assert_eq!(route(&cid(4)), None, "no such server");
        assert_eq!(route(&[0x20; 7]), None, "no such config");
    }

    #[test]
    fn only_active_backends_enter_the_maglev_table() {
        let pool = Pool::with_maglev_size(
            decoder(),
            [
                backend("a", "0001").with_state(BackendState::Draining),
                backend("b", "0002"),
                backend("c", "0003").with_state(BackendState::Down),
            ],
            251,
        )
        .expect("valid");
        let chosen: std::collections::HashSet<_> = (0..1000u64)
            .filter_map(|k| pool.fallback(FallbackKey::Dcid(&k.to_be_bytes())))
            .map(|(index, _)| index)
            .collect();
        assert_eq!(
            chosen.into_iter().collect::<Vec<_>>(),
            [pool.find("b").expect("b")]
        );
    }

    #[test]
    fn table_keys_resolve_by_name_in_any_pool() {
        let first =
            Pool::with_maglev_size(decoder(), [backend("a", "0001"), backend("c", "0003")], 7)
                .expect("valid");
        let second = Pool::with_maglev_size(
            decoder(),
            [
                backend("b", "0002"),
                backend("c", "0003"),
                backend("d", "0004"),
            ],
            7,
        )
        .expect("valid");
        let key = |pool: &Pool, name: &str| {
            pool.backends()[pool.find(name).expect("present").get()].key()
        };
        assert_eq!(key(&first, "c"), key(&second, "c"));
        for pool in [&first, &second] {
            assert_eq!(pool.find_key(key(&second, "c")), pool.find("c"));
        }
        assert_eq!(second.find_key(key(&first, "a")), None);
        assert_eq!(first.find_key(key(&second, "d")), None);
    }

    #[test]
    fn primes() {
        let small: Vec<usize> = (0..30).filter(|&n| is_prime(n)).collect();
        assert_eq!(small, [2, 3, 5, 7, 11, 13, 17, 19, 23, 29]);
        assert!(is_prime(65537) && is_prime(1_000_003) && !is_prime(65535));
    }
}
