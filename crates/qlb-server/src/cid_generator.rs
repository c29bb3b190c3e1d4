//! quinn's connection ID hook, backed by a QUIC-LB encoder: every CID this server issues
//! (handshake, Retry, NEW_CONNECTION_ID) carries its server ID, so the load balancer routes
//! packets to it whatever the client's address has become.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use quic_lb::{Config, ConnectionId, Decoder, Encoder, ServerId};
use quinn::ConnectionIdGenerator;
use quinn_proto::InvalidCid;

use crate::error::BuildError;

/// A [`quinn::ConnectionIdGenerator`] issuing QUIC-LB connection IDs for one server ID.
///
/// `validate` accepts the CIDs of the whole cluster: any CID that decodes under this
/// configuration, whatever server ID it carries. quinn answers a packet for an unknown
/// connection with a stateless reset only if its CID validates, and the reset token is keyed
/// by the cluster secret, so when a backend dies and the load balancer sends its clients'
/// packets elsewhere, the backend that receives them resets those connections at once
/// instead of leaving the clients to their idle timeout. CIDs of other codepoints, of the
/// failover codepoint, or too short are dropped silently.
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
/// assert!(generator.validate(&cid).is_ok());
///
/// let mut decoder = Decoder::new();
/// decoder.insert(config);
/// assert_eq!(decoder.decode(&cid)?.server_id.to_string(), "0a0b");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct QuicLbCidGenerator {
    encoder: Encoder,
    /// The same configuration, for `validate`.
    decoder: Decoder,
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
        let mut decoder = Decoder::new();
        decoder.insert(config);
        Ok(Self {
            encoder,
            decoder,
            issued: CidCounters::default(),
            exhaustion_reported: false,
        })
    }

    /// Counts issued CIDs into `counters`.
    pub(crate) fn with_counters(mut self, counters: CidCounters) -> Self {
        self.issued = counters;
        self
    }

    /// A generator with a fresh random nonce counter for the same configuration and server ID
    /// (each endpoint needs its own, or two would issue the same CIDs).
    pub(crate) fn fresh(&self) -> Self {
        let encoder = Encoder::new(self.encoder.config().clone(), *self.encoder.server_id())
            // The same inputs built `self.encoder`; a clone keeps working if that ever changed.
            .unwrap_or_else(|_| self.encoder.clone());
        Self {
            encoder,
            decoder: self.decoder.clone(),
            issued: self.issued.clone(),
            exhaustion_reported: false,
        }
    }
}

impl ConnectionIdGenerator for QuicLbCidGenerator {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
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
        quinn::ConnectionId::new(&cid)
    }

    fn validate(&self, cid: &quinn::ConnectionId) -> Result<(), InvalidCid> {
        self.decoder.decode(cid).map(|_| ()).map_err(|_| InvalidCid)
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
    fn issues_cids_that_decode_to_the_server_and_validate() {
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
                assert!(ours.validate(&cid).is_ok());
            }
            assert_eq!(ours.issued.routable.get(), 100);
            assert_eq!(ours.issued.failover.get(), 0);
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
