//! quinn's connection ID hook, backed by a QUIC-LB encoder: every CID this server issues
//! (handshake, Retry, NEW_CONNECTION_ID) carries its server ID, so the load balancer routes
//! packets to it whatever the client's address has become.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use quic_lb::{Config, ConnectionId, Decoder, Encoder, ServerId};
use quinn::ConnectionIdGenerator;
use quinn_proto::InvalidCid;

use crate::error::BuildError;
use crate::recent_cids::{RECENT_CIDS, RecentCids};

/// A [`quinn::ConnectionIdGenerator`] issuing QUIC-LB connection IDs for one server ID.
///
/// The configuration can be rotated live to another codepoint with CIDs of the same length;
/// CIDs issued before keep validating.
///
/// `validate` accepts the CIDs of the whole cluster: any CID that decodes under this
/// configuration, whatever server ID it carries. quinn answers a packet for an unknown
/// connection with a stateless reset only if its CID validates, and the reset token is keyed
/// by the cluster secret, so when a backend dies and the load balancer sends its clients'
/// packets elsewhere, the backend that receives them resets those connections at once
/// instead of leaving the clients to their idle timeout. CIDs of other codepoints, of the
/// failover codepoint, or too short are dropped silently, and so are CIDs this server issued
/// itself not long ago (a late packet after the peer retired the CID, see [`recent_cids`]:
/// nothing was lost, and some clients wrongly act on a retired CID's reset).
///
/// [`recent_cids`]: crate::recent_cids
///
/// quinn needs every CID of an endpoint to have one length. After nonce exhaustion the
/// encoder issues config-failover CIDs, which the draft wants at least 8 octets long; so the
/// configuration's CIDs must be at least 8 octets too, and shorter ones are refused.
///
/// ```
/// use qlb_server::QuicLbCidGenerator;
/// use quic_lb::{Config, ConfigId, Decoder, Key};
/// use quinn::ConnectionIdGenerator;
///
/// let config = Config::new(ConfigId::new(0)?, 2, 6, Some(Key::random()))?;
/// let mut generator = QuicLbCidGenerator::new(config.clone(), "0a0b".parse()?)?;
/// let cid = generator.generate_cid();
/// assert_eq!(cid.len(), generator.cid_len());
///
/// // A dead peer's CID is answered with a reset; this server's own is not.
/// let mut peer = QuicLbCidGenerator::new(config.clone(), "0a0c".parse()?)?;
/// assert!(generator.validate(&peer.generate_cid()).is_ok());
/// assert!(generator.validate(&cid).is_err());
///
/// let mut decoder = Decoder::new();
/// decoder.insert(config);
/// assert_eq!(decoder.decode(&cid)?.server_id.to_string(), "0a0b");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct QuicLbCidGenerator {
    encoder: Encoder,
    /// The configuration this server issues under, shared by all its generators.
    issuing: IssuingConfig,
    /// The generation of `issuing` that `encoder` was built from.
    generation: u64,
    issued: CidCounters,
    exhaustion_reported: bool,
}

/// Counters of issued CIDs, shared with the server's metrics.
#[derive(Clone, Debug, Default)]
pub(crate) struct CidCounters {
    /// CIDs that route to this server.
    pub routable: Counter,
    /// Config-failover CIDs issued after nonce exhaustion.
    pub failover: Counter,
    /// Packets for a CID this server issued recently and no longer knows, dropped instead of
    /// answered with a stateless reset.
    pub resets_withheld: Counter,
    /// Nonces the encoder has left under the current configuration. A float: an 18-octet
    /// nonce space (2^144) overflows any integer gauge, and operators compare it with a
    /// threshold, where 53 bits of precision are plenty.
    pub nonces_remaining: Gauge<f64, AtomicU64>,
}

/// The QUIC-LB configuration a server issues CIDs under, shared by its generators so that it
/// can be rotated while connections run ([`Server::rotate_config`](crate::Server::rotate_config)).
#[derive(Clone, Debug)]
pub(crate) struct IssuingConfig {
    shared: Arc<IssuingState>,
}

#[derive(Debug)]
struct IssuingState {
    server_id: ServerId,
    /// Bumped by every rotation; generators compare it on each CID, without a lock.
    generation: AtomicU64,
    current: RwLock<Config>,
    /// Every configuration rotated through, for `validate`: CIDs issued under an old codepoint
    /// still belong to the cluster (stateless resets keep working for them).
    decoder: RwLock<Decoder>,
    /// What every generator of this server issued lately: never reset (`validate`).
    recent: Mutex<RecentCids>,
}

impl IssuingConfig {
    fn new(config: Config, server_id: ServerId) -> Self {
        let mut decoder = Decoder::new();
        decoder.insert(config.clone());
        Self {
            shared: Arc::new(IssuingState {
                server_id,
                generation: AtomicU64::new(0),
                current: RwLock::new(config),
                decoder: RwLock::new(decoder),
                recent: Mutex::new(RecentCids::new(RECENT_CIDS)),
            }),
        }
    }

    /// The configuration new CIDs are issued under.
    pub(crate) fn current(&self) -> Config {
        read(&self.shared.current).clone()
    }

    /// Issues every CID from now on under `config`. It must be at a different codepoint and
    /// give CIDs of the same length (quinn parses short headers with one length per endpoint).
    pub(crate) fn rotate(&self, config: Config) -> Result<(), BuildError> {
        let encoder = Encoder::new(config.clone(), self.shared.server_id)?;
        let mut current = write(&self.shared.current);
        let from = Encoder::new(current.clone(), self.shared.server_id)?.cid_len();
        if config.id() == current.id() {
            return Err(BuildError::RotationSameCodepoint {
                config_id: config.id().get(),
            });
        }
        if encoder.cid_len() != from {
            return Err(BuildError::RotationCidLength {
                from,
                to: encoder.cid_len(),
            });
        }
        write(&self.shared.decoder).insert(config.clone());
        *current = config;
        self.shared.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

/// A poisoned lock only means another thread panicked while holding it; the data (a config,
/// a set of hashes) is still whole.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl QuicLbCidGenerator {
    /// A generator for `server_id` under `config`. Refuses a server ID of the wrong length and
    /// configurations whose CIDs are shorter than 8 octets.
    ///
    /// ```
    /// use qlb_server::QuicLbCidGenerator;
    /// use quic_lb::{Config, ConfigId};
    ///
    /// // 1 + 1 + 4 = 6 octets: too short for a server.
    /// let short = Config::new(ConfigId::new(0)?, 1, 4, None)?;
    /// let err = QuicLbCidGenerator::new(short, "01".parse()?).err().unwrap();
    /// assert!(err.to_string().contains("at least 8"), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(config: Config, server_id: ServerId) -> Result<Self, BuildError> {
        let encoder = Encoder::new(config.clone(), server_id)?;
        if encoder.cid_len() < ConnectionId::MIN_FAILOVER_LEN {
            return Err(BuildError::CidTooShort {
                config_id: config.id().get(),
                cid_len: encoder.cid_len(),
            });
        }
        Ok(Self {
            encoder,
            issuing: IssuingConfig::new(config, server_id),
            generation: 0,
            issued: CidCounters::default(),
            exhaustion_reported: false,
        })
    }

    /// Counts issued CIDs into `counters`.
    pub(crate) fn with_counters(mut self, counters: CidCounters) -> Self {
        self.issued = counters;
        self.publish_remaining();
        self
    }

    /// Sets the `nonces_remaining` gauge from the encoder: one atomic store.
    fn publish_remaining(&self) {
        self.issued
            .nonces_remaining
            .set(self.encoder.nonces_remaining() as f64);
    }

    /// The handle that rotates this generator's configuration (and that of its `fresh` copies).
    pub(crate) fn issuing(&self) -> IssuingConfig {
        self.issuing.clone()
    }

    /// A generator with a fresh random nonce counter for the same configuration and server ID
    /// (each endpoint needs its own, or two would issue the same CIDs).
    pub(crate) fn fresh(&self) -> Self {
        let mut fresh = Self {
            encoder: self.encoder.clone(),
            issuing: self.issuing.clone(),
            generation: u64::MAX,
            issued: self.issued.clone(),
            exhaustion_reported: false,
        };
        fresh.follow_rotation();
        fresh.publish_remaining();
        fresh
    }

    /// Rebuilds the encoder (with a new random nonce start) when the issuing configuration has
    /// changed since it was built.
    fn follow_rotation(&mut self) {
        let generation = self.issuing.shared.generation.load(Ordering::Acquire);
        if generation == self.generation {
            return;
        }
        let config = self.issuing.current();
        // `IssuingConfig::rotate` built an encoder from the same inputs before accepting them.
        if let Ok(encoder) = Encoder::new(config, self.issuing.shared.server_id) {
            self.encoder = encoder;
            self.exhaustion_reported = false;
        }
        self.generation = generation;
    }
}

impl ConnectionIdGenerator for QuicLbCidGenerator {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        self.follow_rotation();
        let cid = self.encoder.generate();
        if cid.codepoint() == Some(ConnectionId::FAILOVER_CODEPOINT) {
            self.issued.failover.inc();
            if !self.exhaustion_reported {
                self.exhaustion_reported = true;
                tracing::error!(
                    config_id = self.encoder.config().id().get(),
                    "QUIC-LB nonces exhausted: issuing config-failover CIDs, which the load \
                     balancer cannot route to this server; install a configuration with a new key"
                );
            }
        } else {
            self.issued.routable.inc();
        }
        self.publish_remaining();
        lock(&self.issuing.shared.recent).insert(&cid);
        quinn::ConnectionId::new(&cid)
    }

    /// quinn asks only about short-header packets for CIDs it does not know: the answer
    /// decides whether it sends a stateless reset.
    fn validate(&self, cid: &quinn::ConnectionId) -> Result<(), InvalidCid> {
        read(&self.issuing.shared.decoder)
            .decode(cid)
            .map_err(|_| InvalidCid)?;
        if lock(&self.issuing.shared.recent).contains(cid) {
            self.issued.resets_withheld.inc();
            return Err(InvalidCid);
        }
        Ok(())
    }

    fn cid_len(&self) -> usize {
        self.encoder.cid_len()
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quic_lb::{ConfigId, Key};

    fn config(key: Option<Key>) -> Config {
        Config::new(ConfigId::new(2).expect("valid"), 3, 8, key).expect("valid")
    }

    fn generator(config: Config, sid: &str) -> QuicLbCidGenerator {
        QuicLbCidGenerator::new(config, sid.parse().expect("hex")).expect("valid")
    }

    #[test]
    fn issues_cids_that_decode_to_the_server_and_are_never_reset_by_it() {
        for key in [None, Some(Key::random())] {
            let config = config(key);
            let mut ours = generator(config.clone(), "a1b2c3");
            let mut decoder = Decoder::new();
            decoder.insert(config);
            for _ in 0..100 {
                let cid = ours.generate_cid();
                assert_eq!(cid.len(), 12);
                let decoded = decoder.decode(&cid).expect("routable");
                assert_eq!(decoded.server_id.to_string(), "a1b2c3");
                assert!(ours.validate(&cid).is_err(), "a late packet of ours");
            }
            assert_eq!(ours.issued.routable.get(), 100);
            assert_eq!(ours.issued.failover.get(), 0);
            assert_eq!(ours.issued.resets_withheld.get(), 100);
        }
    }

    /// Other servers of the cluster are "ours" for stateless resets; other codepoints,
    /// failover CIDs and truncated CIDs are not.
    #[test]
    fn validates_the_cluster_and_rejects_the_rest() {
        let config = config(Some(Key::random()));
        let ours = generator(config.clone(), "a1b2c3");
        let mut cluster_peer = generator(config, "a1b2c4");
        for _ in 0..50 {
            assert!(ours.validate(&cluster_peer.generate_cid()).is_ok());
        }
        let other_codepoint =
            Config::new(ConfigId::new(3).expect("valid"), 3, 8, None).expect("valid");
        let mut elsewhere = generator(other_codepoint, "a1b2c3");
        assert!(ours.validate(&elsewhere.generate_cid()).is_err());
        for junk in [&[][..], &[0x40; 11][..], &[0xff; 12][..], &[0x5f; 11][..]] {
            assert!(
                ours.validate(&quinn::ConnectionId::new(junk)).is_err(),
                "{junk:?}"
            );
        }
    }

    /// What one endpoint of a server issued, its other endpoints do not reset either; the
    /// same server restarted (a new generator) does, as it lost the connections.
    #[test]
    fn a_cid_is_withheld_by_every_generator_of_its_server_and_reset_after_a_restart() {
        let config = config(Some(Key::random()));
        let mut first = generator(config.clone(), "a1b2c3");
        let second = first.fresh();
        let cid = first.generate_cid();
        assert!(second.validate(&cid).is_err());
        let restarted = generator(config, "a1b2c3");
        assert!(restarted.validate(&cid).is_ok());
    }

    /// After a rotation, every generator of the server (including `fresh` copies made before)
    /// issues under the new codepoint, and CIDs of the old one still validate.
    #[test]
    fn rotation_reaches_every_generator_and_old_cids_stay_valid() {
        let mut first = generator(config(None), "000001");
        let mut second = first.fresh();
        let old_cid = generator(config(None), "000002").generate_cid();
        let next = Config::new(ConfigId::new(4).expect("valid"), 3, 8, Some(Key::random()))
            .expect("valid");
        first.issuing().rotate(next.clone()).expect("same length");
        let mut decoder = Decoder::new();
        decoder.insert(next);
        for generator in [&mut first, &mut second] {
            let cid = generator.generate_cid();
            assert_eq!(cid[0] >> 5, 4);
            assert_eq!(
                decoder
                    .decode(&cid)
                    .expect("routable")
                    .server_id
                    .to_string(),
                "000001"
            );
            assert!(generator.validate(&old_cid).is_ok());
        }
        assert_eq!(first.fresh().generate_cid()[0] >> 5, 4);
    }

    #[test]
    fn fresh_generators_start_their_nonces_apart() {
        let mut a = generator(config(None), "000001");
        let mut b = a.fresh();
        let from_a: std::collections::HashSet<_> = (0..1000).map(|_| a.generate_cid()).collect();
        assert!((0..1000).all(|_| !from_a.contains(&b.generate_cid())));
    }

    #[test]
    fn refuses_short_cids_and_wrong_server_id_lengths() {
        let seven = Config::new(ConfigId::new(0).expect("valid"), 2, 4, None).expect("valid");
        assert!(matches!(
            QuicLbCidGenerator::new(seven, "0001".parse().expect("hex")),
            Err(BuildError::CidTooShort {
                config_id: 0,
                cid_len: 7
            })
        ));
        assert!(matches!(
            QuicLbCidGenerator::new(config(None), "01".parse().expect("hex")),
            Err(BuildError::QuicLb(_))
        ));
    }
}
