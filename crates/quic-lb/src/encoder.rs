//! The server side: issuing connection IDs for one server ID (draft section 5.4).

use rand::{Rng, RngExt};

use crate::cid::ConnectionId;
use crate::cipher::Cipher;
use crate::config::{Config, MAX_NONCE_LEN};
use crate::error::ConfigError;
use crate::nonce::NonceCounter;
use crate::server_id::ServerId;

/// Issues QUIC-LB connection IDs for one server ID under one [`Config`].
///
/// Nonces come from a counter that starts at a random value and visits its whole space once
/// (draft section 9.6), so no nonce repeats under one key. Without a key the counter is passed
/// through a secret per-encoder permutation first, so plaintext nonces stay unique and are not
/// linkable to one another (section 9). Once the counter has come round, the encoder is
/// *exhausted*: [`Encoder::is_exhausted`] says so and [`Encoder::generate`] issues random
/// config-failover CIDs (codepoint 0b111, section 3.2) until a new configuration is installed.
///
/// ```
/// use quic_lb::{Config, ConfigId, Encoder, Key};
///
/// let config = Config::new(ConfigId::new(1)?, 2, 6, Some(Key::random()))?;
/// let mut encoder = Encoder::new(config, "00ff".parse()?)?;
/// let a = encoder.generate();
/// let b = encoder.generate();
/// assert_ne!(a, b);
/// assert_eq!(a.len(), 9);
/// assert_eq!(a.codepoint(), Some(1));
/// assert!(!encoder.is_exhausted());
/// # Ok::<(), quic_lb::ConfigError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Encoder {
    config: Config,
    server_id: ServerId,
    appended_len: usize,
    counter: NonceCounter,
    /// Plaintext mode only: the secret permutation that makes counter nonces unlinkable.
    nonce_permutation: Option<NoncePermutation>,
}

/// A secret AES key used as a permutation over nonce values. `Debug` never shows it.
#[derive(Clone)]
struct NoncePermutation(Cipher);

impl std::fmt::Debug for NoncePermutation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NoncePermutation(..)")
    }
}

impl Encoder {
    /// An encoder for `server_id`, whose length must match the config's `server_id_len`.
    ///
    /// ```
    /// use quic_lb::{Config, ConfigId, Encoder};
    ///
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// assert!(Encoder::new(config.clone(), "0001".parse()?).is_ok());
    /// assert!(Encoder::new(config, "01".parse()?).is_err());
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn new(config: Config, server_id: ServerId) -> Result<Self, ConfigError> {
        let start = rand::rng().random::<u128>();
        Self::with_counter_start(config, server_id, start)
    }

    fn with_counter_start(
        config: Config,
        server_id: ServerId,
        start: u128,
    ) -> Result<Self, ConfigError> {
        if server_id.len() != config.server_id_len() {
            return Err(ConfigError::ServerIdMismatch {
                expected: config.server_id_len(),
                got: server_id.len(),
            });
        }
        let bits = 8 * config.nonce_len().min(16) as u32;
        let nonce_permutation = match config.key() {
            Some(_) => None,
            None => Some(NoncePermutation(Cipher::new(
                &rand::random(),
                config.nonce_len(),
            ))),
        };
        Ok(Self {
            counter: NonceCounter::new(bits, start),
            config,
            server_id,
            appended_len: 0,
            nonce_permutation,
        })
    }

    /// Appends `count` random octets to every CID, after the (encrypted) plaintext block.
    /// All servers of a configuration must append the same count (draft section 5.4); the
    /// load balancer ignores them. The whole CID must fit in 20 octets.
    ///
    /// ```
    /// use quic_lb::{Config, ConfigId, Encoder};
    ///
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// let mut encoder = Encoder::new(config, "0001".parse()?)?.with_appended_octets(3)?;
    /// assert_eq!(encoder.generate().len(), 12);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn with_appended_octets(mut self, count: usize) -> Result<Self, ConfigError> {
        if self.config.cid_len() + count > ConnectionId::MAX_LEN {
            return Err(ConfigError::AppendedOctets {
                plaintext_len: self.config.plaintext_len(),
                appended: count,
            });
        }
        self.appended_len = count;
        Ok(self)
    }

    /// The next connection ID: routable to this server while nonces last, a random
    /// config-failover CID once they are exhausted. Never allocates.
    ///
    /// ```
    /// use quic_lb::{Config, ConfigId, Decoder, Encoder};
    ///
    /// let config = Config::new(ConfigId::new(2)?, 3, 5, None)?;
    /// let mut encoder = Encoder::new(config.clone(), "abcdef".parse()?)?;
    /// let mut decoder = Decoder::new();
    /// decoder.insert(config);
    /// let cid = encoder.generate();
    /// assert_eq!(decoder.decode(&cid)?.server_id, *encoder.server_id());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn generate(&mut self) -> ConnectionId {
        let Some(counter) = self.counter.next() else {
            return ConnectionId::failover(self.cid_len());
        };
        let mut nonce = [0u8; MAX_NONCE_LEN];
        let nonce = &mut nonce[..self.config.nonce_len()];
        NonceCounter::write(counter, nonce);
        if let Some(NoncePermutation(permutation)) = &self.nonce_permutation {
            permutation.encrypt(nonce);
        }
        let mut rng = rand::rng();
        let mut appended = [0u8; ConnectionId::MAX_LEN];
        let appended = &mut appended[..self.appended_len];
        rng.fill_bytes(appended);
        self.config
            .encode(&self.server_id, nonce, appended, rng.random())
            // Every input was validated when the encoder was built.
            .unwrap_or_else(|_| ConnectionId::failover(self.cid_len()))
    }

    /// Whether every nonce has been used. The encoder then issues only config-failover CIDs;
    /// the server should be given a configuration with a new key.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId, Encoder};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// assert!(!Encoder::new(config, "0001".parse()?)?.is_exhausted());
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn is_exhausted(&self) -> bool {
        self.counter.is_exhausted()
    }

    /// Nonces left before exhaustion (saturating at `u128::MAX` for 16-octet and longer
    /// nonces), for alerting before a server runs out (draft section 9.6).
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId, Encoder};
    /// let config = Config::new(ConfigId::new(0)?, 2, 4, None)?;
    /// let mut encoder = Encoder::new(config, "0001".parse()?)?;
    /// encoder.generate();
    /// assert_eq!(encoder.nonces_remaining(), (1 << 32) - 1);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn nonces_remaining(&self) -> u128 {
        self.counter.remaining()
    }

    /// Length of the CIDs this encoder issues while it has nonces.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId, Encoder};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// assert_eq!(Encoder::new(config, "0001".parse()?)?.cid_len(), 9);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn cid_len(&self) -> usize {
        self.config.cid_len() + self.appended_len
    }

    /// The configuration.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId, Encoder};
    /// let config = Config::new(ConfigId::new(4)?, 2, 6, None)?;
    /// assert_eq!(Encoder::new(config, "0001".parse()?)?.config().id().get(), 4);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The server ID every routable CID carries.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId, Encoder};
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?;
    /// assert_eq!(Encoder::new(config, "0001".parse()?)?.server_id().to_string(), "0001");
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn server_id(&self) -> &ServerId {
        &self.server_id
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ConfigId, Decoder, Key};
    use std::collections::HashSet;

    fn config(sid: usize, nonce: usize, key: Option<Key>) -> Config {
        Config::new(ConfigId::new(3).expect("valid"), sid, nonce, key).expect("valid")
    }

    fn sid(len: usize) -> ServerId {
        ServerId::new(&vec![0x42; len]).expect("valid")
    }

    /// Shrinks the nonce space to 8 bits so that the test can use all of it: every nonce
    /// is issued once, across the wrap, then exhaustion is reported and failover CIDs follow.
    #[test]
    fn exhaustion_switches_to_failover_cids() {
        for key in [None, Some(Key::new([9; 16]))] {
            let config = config(3, 4, key);
            let mut encoder = Encoder::new(config.clone(), sid(3)).expect("valid");
            encoder.counter = NonceCounter::new(8, 0xf0);
            let mut decoder = Decoder::new();
            decoder.insert(config);
            let mut seen = HashSet::new();
            for issued in 0..256 {
                assert_eq!(encoder.nonces_remaining(), 256 - issued);
                assert!(!encoder.is_exhausted());
                let cid = encoder.generate();
                assert!(seen.insert(cid), "repeated {cid} after {issued}");
                assert_eq!(decoder.decode(&cid).map(|d| d.server_id), Ok(sid(3)));
            }
            assert!(encoder.is_exhausted());
            assert_eq!(encoder.nonces_remaining(), 0);
            for _ in 0..8 {
                let cid = encoder.generate();
                assert_eq!(cid.codepoint(), Some(7));
                assert_eq!(cid.len(), 8);
                assert_eq!(usize::from(cid[0] & 0x1f), 7);
                assert!(seen.insert(cid));
            }
        }
    }

    #[test]
    fn plaintext_nonces_are_a_permutation_of_the_counter() {
        let mut encoder = Encoder::new(config(2, 4, None), sid(2)).expect("valid");
        encoder.counter = NonceCounter::new(32, 0);
        let mut seen = HashSet::new();
        let mut sequential = 0;
        let mut previous: Option<u32> = None;
        for _ in 0..(1 << 16) {
            let cid = encoder.generate();
            let nonce = u32::from_be_bytes(cid[3..7].try_into().expect("4 octets"));
            assert!(seen.insert(nonce));
            if previous.is_some_and(|p| nonce == p.wrapping_add(1)) {
                sequential += 1;
            }
            previous = Some(nonce);
        }
        // A plain counter would be sequential every time; a permutation almost never.
        assert!(sequential < 4, "{sequential} sequential nonces");
    }

    #[test]
    fn refuses_appended_octets_past_twenty() {
        let encoder = Encoder::new(config(3, 16, None), sid(3)).expect("valid");
        assert!(encoder.clone().with_appended_octets(0).is_ok());
        assert!(encoder.with_appended_octets(1).is_err());
    }

    #[test]
    fn debug_shows_no_secret() {
        let encoder = Encoder::new(config(2, 6, None), sid(2)).expect("valid");
        let shown = format!("{encoder:?}");
        assert!(shown.contains("NoncePermutation(..)"), "{shown}");
        assert!(!shown.contains("aes"), "{shown}");
    }
}
