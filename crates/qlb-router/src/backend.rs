//! A backend server as the router sees it: where it is, what it weighs, which server IDs it
//! holds, and whether it takes traffic.

use std::net::SocketAddr;
use std::sync::Arc;

use quic_lb::{ConfigId, ServerId};

use crate::hash::{Domain, stable_hash};

/// Whether a backend takes traffic.
///
/// ```
/// use qlb_router::BackendState;
///
/// assert!(BackendState::Active.takes_new_connections());
/// assert!(!BackendState::Draining.takes_new_connections());
/// assert!(BackendState::Draining.serves_existing_connections());
/// assert!(!BackendState::Down.serves_existing_connections());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum BackendState {
    /// Healthy and in service: new connections and existing ones.
    #[default]
    Active,
    /// Going away: its connections and handshakes in progress still reach it, new
    /// connections do not.
    Draining,
    /// Unhealthy or removed from service: nothing reaches it. Its CIDs go to the fallback,
    /// where the backend that receives them can answer with a stateless reset.
    Down,
}

impl BackendState {
    /// Whether the fallback may choose this backend for a new connection.
    ///
    /// ```
    /// assert!(qlb_router::BackendState::Active.takes_new_connections());
    /// ```
    pub fn takes_new_connections(self) -> bool {
        self == Self::Active
    }

    /// Whether packets of connections it already serves (by CID or by table) reach it.
    ///
    /// ```
    /// assert!(qlb_router::BackendState::Draining.serves_existing_connections());
    /// ```
    pub fn serves_existing_connections(self) -> bool {
        self != Self::Down
    }

    /// A stable snake_case label, for metrics and logs.
    ///
    /// ```
    /// assert_eq!(qlb_router::BackendState::Draining.as_str(), "draining");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draining => "draining",
            Self::Down => "down",
        }
    }
}

/// A backend server: name, address, weight, one server ID per QUIC-LB configuration, state.
///
/// The name is the backend's stable identity: flow tables remember it (hashed), so that entries survive
/// the replacement of the backend set. A [`Pool`](crate::Pool) validates backends as a set.
///
/// ```
/// use qlb_router::{Backend, BackendState};
/// use quic_lb::ConfigId;
///
/// let backend = Backend::new("eu-1", "192.0.2.10:4433".parse()?)
///     .with_server_id(ConfigId::new(0)?, "0a01".parse()?)
///     .with_weight(3)
///     .with_state(BackendState::Draining);
/// assert_eq!(backend.name(), "eu-1");
/// assert_eq!(backend.weight(), 3);
/// assert_eq!(backend.server_id(ConfigId::new(0)?).map(|s| s.to_string()), Some("0a01".into()));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Backend {
    name: Arc<str>,
    key: BackendKey,
    address: SocketAddr,
    weight: u32,
    server_ids: [Option<ServerId>; ConfigId::COUNT],
    state: BackendState,
}

impl Backend {
    /// An active backend of weight 1 without server IDs: reachable by the fallback only,
    /// until [`Backend::with_server_id`] gives it one.
    ///
    /// ```
    /// let backend = qlb_router::Backend::new("a", "192.0.2.1:443".parse()?);
    /// assert_eq!(backend.weight(), 1);
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn new(name: impl Into<Arc<str>>, address: SocketAddr) -> Self {
        let name: Arc<str> = name.into();
        Self {
            key: BackendKey::of(&name),
            name,
            address,
            weight: 1,
            server_ids: [None; ConfigId::COUNT],
            state: BackendState::Active,
        }
    }

    /// Sets the server ID this backend holds under configuration `config_id`, replacing any.
    ///
    /// ```
    /// use quic_lb::ConfigId;
    ///
    /// let backend = qlb_router::Backend::new("a", "192.0.2.1:443".parse()?)
    ///     .with_server_id(ConfigId::new(1)?, "07".parse()?);
    /// assert!(backend.server_id(ConfigId::new(1)?).is_some());
    /// assert!(backend.server_id(ConfigId::new(0)?).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[must_use]
    pub fn with_server_id(mut self, config_id: ConfigId, server_id: ServerId) -> Self {
        if let Some(slot) = self.server_ids.get_mut(usize::from(config_id.get())) {
            *slot = Some(server_id);
        }
        self
    }

    /// Sets the Maglev weight: the backend's share of new connections is proportional to it.
    /// A [`Pool`](crate::Pool) refuses 0.
    ///
    /// ```
    /// let backend = qlb_router::Backend::new("a", "192.0.2.1:443".parse()?).with_weight(5);
    /// assert_eq!(backend.weight(), 5);
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    #[must_use]
    pub fn with_weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets the state.
    ///
    /// ```
    /// use qlb_router::{Backend, BackendState};
    ///
    /// let backend = Backend::new("a", "192.0.2.1:443".parse()?).with_state(BackendState::Down);
    /// assert_eq!(backend.state(), BackendState::Down);
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    #[must_use]
    pub fn with_state(mut self, state: BackendState) -> Self {
        self.state = state;
        self
    }

    /// The name, unique within a pool.
    ///
    /// ```
    /// let backend = qlb_router::Backend::new("a", "192.0.2.1:443".parse()?);
    /// assert_eq!(backend.name(), "a");
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The address datagrams are forwarded to.
    ///
    /// ```
    /// let backend = qlb_router::Backend::new("a", "192.0.2.1:443".parse()?);
    /// assert_eq!(backend.address().port(), 443);
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The Maglev weight.
    ///
    /// ```
    /// let backend = qlb_router::Backend::new("a", "192.0.2.1:443".parse()?);
    /// assert_eq!(backend.weight(), 1);
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The server ID held under configuration `config_id`, if any.
    ///
    /// ```
    /// use quic_lb::ConfigId;
    ///
    /// let backend = qlb_router::Backend::new("a", "192.0.2.1:443".parse()?);
    /// assert!(backend.server_id(ConfigId::new(0)?).is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn server_id(&self, config_id: ConfigId) -> Option<&ServerId> {
        self.server_ids.get(usize::from(config_id.get()))?.as_ref()
    }

    /// The server IDs held, with their configuration.
    ///
    /// ```
    /// use quic_lb::ConfigId;
    ///
    /// let backend = qlb_router::Backend::new("a", "192.0.2.1:443".parse()?)
    ///     .with_server_id(ConfigId::new(2)?, "01".parse()?);
    /// let ids: Vec<u8> = backend.server_ids().map(|(config, _)| config.get()).collect();
    /// assert_eq!(ids, [2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn server_ids(&self) -> impl Iterator<Item = (ConfigId, &ServerId)> {
        self.server_ids
            .iter()
            .zip(0u8..)
            .filter_map(|(sid, id)| Some((ConfigId::new(id).ok()?, sid.as_ref()?)))
    }

    /// The state.
    ///
    /// ```
    /// use qlb_router::{Backend, BackendState};
    ///
    /// assert_eq!(Backend::new("a", "192.0.2.1:443".parse()?).state(), BackendState::Active);
    /// # Ok::<(), std::net::AddrParseError>(())
    /// ```
    pub fn state(&self) -> BackendState {
        self.state
    }

    /// The name as a shared string, for counters.
    pub(crate) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// The key flow tables remember this backend by.
    pub(crate) fn key(&self) -> BackendKey {
        self.key
    }

    /// Its key in the flow tables (a fixed-key hash of its name), which stays the same
    /// across pools: for a data path outside this process (the XDP program) that keeps
    /// flow tables of its own.
    ///
    /// ```
    /// use qlb_router::Backend;
    ///
    /// let a = Backend::new("a", "192.0.2.1:443".parse()?);
    /// assert_eq!(a.table_key(), Backend::new("a", "192.0.2.9:443".parse()?).table_key());
    /// assert_ne!(a.table_key(), Backend::new("b", "192.0.2.1:443".parse()?).table_key());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn table_key(&self) -> u64 {
        self.key.0
    }
}

/// A backend's identity in the flow tables, stable across pools: a fixed-key 64-bit hash of
/// its name. Plain data, so that recording a decision costs no reference counting on a
/// counter that every worker shares; a [`Pool`](crate::Pool) refuses two names with one key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub(crate) struct BackendKey(u64);

impl BackendKey {
    pub(crate) fn of(name: &str) -> Self {
        Self(stable_hash(Domain::BackendName, name.as_bytes()))
    }
}

/// The position of a backend in one [`Pool`](crate::Pool)'s [`backends`](crate::Pool::backends)
/// (sorted by name). It means nothing for another pool: keep names across pool swaps.
///
/// ```
/// use qlb_router::{Backend, Pool};
///
/// let pool = Pool::new(quic_lb::Decoder::new(), [
///     Backend::new("b", "192.0.2.2:443".parse()?),
///     Backend::new("a", "192.0.2.1:443".parse()?),
/// ])?;
/// let index = pool.find("b").expect("present");
/// assert_eq!(index.get(), 1);
/// assert_eq!(pool.backend(index).map(|b| b.name()), Some("b"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct BackendIndex(u32);

impl BackendIndex {
    /// Only pools make indices: one per backend, and a pool holds fewer than 2^32.
    pub(crate) fn new(index: usize) -> Self {
        Self(u32::try_from(index).unwrap_or(u32::MAX))
    }

    /// The position in [`Pool::backends`](crate::Pool::backends).
    ///
    /// ```
    /// use qlb_router::{Backend, Pool};
    ///
    /// let pool = Pool::new(quic_lb::Decoder::new(), [Backend::new("a", "192.0.2.1:443".parse()?)])?;
    /// assert_eq!(pool.find("a").map(|i| i.get()), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(self) -> usize {
        self.0 as usize
    }
}
