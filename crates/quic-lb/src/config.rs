//! A QUIC-LB configuration (draft section 5.3): codepoint, lengths, optional key.

use std::fmt;
use std::str::FromStr;

use crate::cid::{ConnectionId, first_octet};
use crate::cipher::Cipher;
use crate::error::ConfigError;
use crate::server_id::{MAX_SERVER_ID_LEN, MIN_SERVER_ID_LEN, ServerId};

pub(crate) const MIN_NONCE_LEN: usize = 4;
pub(crate) const MAX_NONCE_LEN: usize = 18;
pub(crate) const MAX_PLAINTEXT_LEN: usize = 19;
/// The plaintext length at which the draft uses one AES block instead of four passes.
const SINGLE_PASS_LEN: usize = 16;

/// A config rotation codepoint, 0 to 6: the top three bits of every QUIC-LB CID.
///
/// Codepoint 7 (0b111) is reserved for config-failover CIDs, so it cannot be a `ConfigId`.
///
/// ```
/// use quic_lb::ConfigId;
///
/// assert_eq!(ConfigId::new(6)?.get(), 6);
/// assert!(ConfigId::new(7).is_err());
/// # Ok::<(), quic_lb::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct ConfigId(u8);

impl ConfigId {
    /// The number of usable codepoints (0..=6).
    ///
    /// ```
    /// use quic_lb::ConfigId;
    ///
    /// assert!(ConfigId::new(ConfigId::COUNT as u8 - 1).is_ok());
    /// assert!(ConfigId::new(ConfigId::COUNT as u8).is_err());
    /// ```
    pub const COUNT: usize = 7;

    /// Checks that `id` is 0..=6.
    ///
    /// ```
    /// assert!(quic_lb::ConfigId::new(0).is_ok());
    /// ```
    pub fn new(id: u8) -> Result<Self, ConfigError> {
        if usize::from(id) < Self::COUNT {
            Ok(Self(id))
        } else {
            Err(ConfigError::ConfigId(id))
        }
    }

    /// The codepoint as a number.
    ///
    /// ```
    /// assert_eq!(quic_lb::ConfigId::new(3)?.get(), 3);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    #[inline]
    pub fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for ConfigId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A 16-octet AES-128 key. Its `Debug` output never shows the key.
///
/// ```
/// use quic_lb::Key;
///
/// let key: Key = "8f95f09245765f80256934e50c66207f".parse()?;
/// assert_eq!(format!("{key:?}"), "Key(..)");
/// # Ok::<(), quic_lb::ConfigError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Key([u8; 16]);

impl Key {
    /// Wraps raw key octets.
    ///
    /// ```
    /// let key = quic_lb::Key::new([7; 16]);
    /// assert_eq!(key.as_bytes(), &[7; 16]);
    /// ```
    pub fn new(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// A fresh key from the operating system's random generator.
    ///
    /// ```
    /// assert_ne!(quic_lb::Key::random(), quic_lb::Key::random());
    /// ```
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The raw key octets, for writing a configuration file.
    ///
    /// ```
    /// assert_eq!(quic_lb::Key::new([0; 16]).as_bytes().len(), 16);
    /// ```
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl FromStr for Key {
    type Err = ConfigError;

    /// Parses 32 hex digits.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(s.trim(), &mut bytes).map_err(|_| ConfigError::Key)?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// How a configuration protects the server ID; it follows from the parameters.
///
/// ```
/// use quic_lb::{Config, ConfigId, Key, Mode};
///
/// let key = || Some(Key::new([1; 16]));
/// assert_eq!(Config::new(ConfigId::new(0)?, 2, 6, None)?.mode(), Mode::Plaintext);
/// assert_eq!(Config::new(ConfigId::new(0)?, 4, 12, key())?.mode(), Mode::SinglePass);
/// assert_eq!(Config::new(ConfigId::new(0)?, 2, 6, key())?.mode(), Mode::FourPass);
/// # Ok::<(), quic_lb::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// No key: the server ID is in the clear (draft section 5.4).
    Plaintext,
    /// Key and `server_id_len + nonce_len == 16`: one AES-128-ECB block (section 5.4.1).
    SinglePass,
    /// Key and any other length: a four-round Feistel network over AES-128 (section 5.4.2).
    FourPass,
}

/// One QUIC-LB configuration, validated; the AES key schedule is expanded once, here.
///
/// ```
/// use quic_lb::{Config, ConfigId, Key, Mode};
///
/// let key: Key = "8f95f09245765f80256934e50c66207f".parse()?;
/// let config = Config::new(ConfigId::new(0)?, 3, 4, Some(key))?;
/// assert_eq!(config.mode(), Mode::FourPass);
/// assert_eq!(config.cid_len(), 8);
///
/// // Every invalid combination is refused, naming the field.
/// let err = Config::new(ConfigId::new(0)?, 10, 10, None).unwrap_err();
/// assert!(err.to_string().starts_with("nonce_len:"));
/// # Ok::<(), quic_lb::ConfigError>(())
/// ```
#[derive(Clone)]
pub struct Config {
    id: ConfigId,
    server_id_len: u8,
    nonce_len: u8,
    key: Option<Key>,
    cipher: Option<Cipher>,
    length_self_encoding: bool,
}

impl Config {
    /// Validates the parameters: server ID 1..=15 octets, nonce 4..=18, sum at most 19.
    /// Length self-encoding is on; see [`Config::with_length_self_encoding`].
    ///
    /// ```
    /// use quic_lb::{Config, ConfigId};
    ///
    /// assert!(Config::new(ConfigId::new(1)?, 2, 6, None).is_ok());
    /// assert!(Config::new(ConfigId::new(1)?, 0, 6, None).is_err());
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn new(
        id: ConfigId,
        server_id_len: usize,
        nonce_len: usize,
        key: Option<Key>,
    ) -> Result<Self, ConfigError> {
        if !(MIN_SERVER_ID_LEN..=MAX_SERVER_ID_LEN).contains(&server_id_len) {
            return Err(ConfigError::ServerIdLen(server_id_len));
        }
        if !(MIN_NONCE_LEN..=MAX_NONCE_LEN).contains(&nonce_len) {
            return Err(ConfigError::NonceLen(nonce_len));
        }
        if server_id_len + nonce_len > MAX_PLAINTEXT_LEN {
            return Err(ConfigError::PlaintextLen {
                server_id_len,
                nonce_len,
            });
        }
        Ok(Self {
            id,
            server_id_len: server_id_len as u8,
            nonce_len: nonce_len as u8,
            cipher: key
                .as_ref()
                .map(|k| Cipher::new(k.as_bytes(), server_id_len + nonce_len)),
            key,
            length_self_encoding: true,
        })
    }

    /// Sets whether servers write `len(CID) - 1` into the five low bits of the first octet
    /// (draft section 3.3). Off, those bits are random. Load balancers ignore the flag.
    ///
    /// ```
    /// use quic_lb::{Config, ConfigId};
    ///
    /// let config = Config::new(ConfigId::new(0)?, 2, 6, None)?.with_length_self_encoding(false);
    /// assert!(!config.length_self_encoding());
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    #[must_use]
    pub fn with_length_self_encoding(mut self, on: bool) -> Self {
        self.length_self_encoding = on;
        self
    }

    /// The config rotation codepoint.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// let config = Config::new(ConfigId::new(5)?, 2, 6, None)?;
    /// assert_eq!(config.id().get(), 5);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    #[inline]
    pub fn id(&self) -> ConfigId {
        self.id
    }

    /// Octets of server ID.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// assert_eq!(Config::new(ConfigId::new(0)?, 2, 6, None)?.server_id_len(), 2);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    #[inline]
    pub fn server_id_len(&self) -> usize {
        usize::from(self.server_id_len)
    }

    /// Octets of nonce.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// assert_eq!(Config::new(ConfigId::new(0)?, 2, 6, None)?.nonce_len(), 6);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    #[inline]
    pub fn nonce_len(&self) -> usize {
        usize::from(self.nonce_len)
    }

    /// `server_id_len + nonce_len`: the octets after the first octet that the cipher covers.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// assert_eq!(Config::new(ConfigId::new(0)?, 2, 6, None)?.plaintext_len(), 8);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    #[inline]
    pub fn plaintext_len(&self) -> usize {
        self.server_id_len() + self.nonce_len()
    }

    /// Length of a CID under this config without appended server octets: `1 + plaintext_len`.
    /// A load balancer reads this many octets of a short-header DCID.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// assert_eq!(Config::new(ConfigId::new(0)?, 2, 6, None)?.cid_len(), 9);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    #[inline]
    pub fn cid_len(&self) -> usize {
        1 + self.plaintext_len()
    }

    /// The key, if any.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// assert!(Config::new(ConfigId::new(0)?, 2, 6, None)?.key().is_none());
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn key(&self) -> Option<&Key> {
        self.key.as_ref()
    }

    /// Whether servers self-encode the CID length in the first octet.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId};
    /// assert!(Config::new(ConfigId::new(0)?, 2, 6, None)?.length_self_encoding());
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn length_self_encoding(&self) -> bool {
        self.length_self_encoding
    }

    /// The protection mode the parameters select.
    ///
    /// ```
    /// use quic_lb::{Config, ConfigId, Key, Mode};
    ///
    /// let key = Some(Key::new([1; 16]));
    /// assert_eq!(Config::new(ConfigId::new(0)?, 8, 8, key)?.mode(), Mode::SinglePass);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn mode(&self) -> Mode {
        match self.cipher {
            None => Mode::Plaintext,
            Some(_) if self.plaintext_len() == SINGLE_PASS_LEN => Mode::SinglePass,
            Some(_) => Mode::FourPass,
        }
    }

    /// Builds the CID for `server_id` and `nonce` exactly as section 5.4 says, followed by
    /// `appended` server octets in the clear. This is the deterministic core of
    /// [`Encoder`](crate::Encoder); use it directly only to reproduce a known CID.
    ///
    /// With length self-encoding the five low bits of the first octet hold `len(CID) - 1`,
    /// appended octets included (the draft's text; see `docs/quic-lb.md`). Without it they
    /// hold `unencoded_bits & 0x1f`, which the caller should make random.
    ///
    /// ```
    /// use quic_lb::{Config, ConfigId};
    ///
    /// // Draft-21 appendix B.1.
    /// let config = Config::new(ConfigId::new(0)?, 3, 4, None)?;
    /// let cid = config.encode(&"c4605e".parse()?, &[0x45, 0x04, 0xcc, 0x4f], &[], 0)?;
    /// assert_eq!(cid.to_string(), "07c4605e4504cc4f");
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn encode(
        &self,
        server_id: &ServerId,
        nonce: &[u8],
        appended: &[u8],
        unencoded_bits: u8,
    ) -> Result<ConnectionId, ConfigError> {
        if server_id.len() != self.server_id_len() {
            return Err(ConfigError::ServerIdMismatch {
                expected: self.server_id_len(),
                got: server_id.len(),
            });
        }
        if nonce.len() != self.nonce_len() {
            return Err(ConfigError::NonceMismatch {
                expected: self.nonce_len(),
                got: nonce.len(),
            });
        }
        let len = self.cid_len() + appended.len();
        if len > ConnectionId::MAX_LEN {
            return Err(ConfigError::AppendedOctets {
                plaintext_len: self.plaintext_len(),
                appended: appended.len(),
            });
        }
        let mut buf = [0u8; ConnectionId::MAX_LEN];
        let low_bits = if self.length_self_encoding {
            (len - 1) as u8
        } else {
            unencoded_bits
        };
        buf[0] = first_octet(self.id.get(), low_bits);
        let plaintext = &mut buf[1..self.cid_len()];
        let (sid, rest) = plaintext.split_at_mut(server_id.len());
        sid.copy_from_slice(server_id);
        rest.copy_from_slice(nonce);
        if let Some(cipher) = &self.cipher {
            cipher.encrypt(plaintext);
        }
        buf[self.cid_len()..len].copy_from_slice(appended);
        Ok(ConnectionId::from_array(buf, len))
    }

    /// Recovers the server ID from the `plaintext_len` octets after the first octet.
    /// The caller has checked the length.
    pub(crate) fn server_id_from_block(&self, block: &[u8]) -> ServerId {
        let sid_len = self.server_id_len();
        match &self.cipher {
            None => ServerId::from_validated(&block[..sid_len]),
            Some(cipher) => ServerId::from_head(&cipher.decrypt_prefix(block, sid_len), sid_len),
        }
    }
}

impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.server_id_len == other.server_id_len
            && self.nonce_len == other.nonce_len
            && self.key == other.key
            && self.length_self_encoding == other.length_self_encoding
    }
}

impl Eq for Config {}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("id", &self.id.0)
            .field("server_id_len", &self.server_id_len)
            .field("nonce_len", &self.nonce_len)
            .field("mode", &self.mode())
            .field("length_self_encoding", &self.length_self_encoding)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ConfigId {
        ConfigId::new(n).expect("valid codepoint")
    }

    #[test]
    fn refuses_every_invalid_combination_naming_the_field() {
        let cases: &[(usize, usize, &str)] = &[
            (0, 4, "server_id_len:"),
            (16, 4, "server_id_len:"),
            (1, 3, "nonce_len:"),
            (1, 19, "nonce_len:"),
            (2, 18, "nonce_len:"),
            (15, 5, "nonce_len:"),
        ];
        for &(sid, nonce, field) in cases {
            let err = Config::new(id(0), sid, nonce, None).expect_err("invalid");
            assert!(err.to_string().starts_with(field), "{sid}+{nonce}: {err}");
        }
        assert!(
            ConfigId::new(7)
                .expect_err("7 is reserved")
                .to_string()
                .starts_with("config_id:")
        );
        assert!(
            "00".parse::<Key>()
                .expect_err("short key")
                .to_string()
                .starts_with("key:")
        );
    }

    #[test]
    fn accepts_every_valid_combination() {
        for sid in 1..=15 {
            for nonce in 4..=(19 - sid) {
                let config = Config::new(id(6), sid, nonce, None).expect("valid");
                assert_eq!(config.cid_len(), 1 + sid + nonce);
            }
        }
    }

    #[test]
    fn mode_follows_from_parameters() {
        let key = || Some(Key::new([0; 16]));
        assert_eq!(
            Config::new(id(0), 8, 8, None).expect("valid").mode(),
            Mode::Plaintext
        );
        assert_eq!(
            Config::new(id(0), 8, 8, key()).expect("valid").mode(),
            Mode::SinglePass
        );
        assert_eq!(
            Config::new(id(0), 8, 9, key()).expect("valid").mode(),
            Mode::FourPass
        );
        assert_eq!(
            Config::new(id(0), 1, 4, key()).expect("valid").mode(),
            Mode::FourPass
        );
    }

    #[test]
    fn debug_never_shows_the_key() {
        let config = Config::new(id(0), 2, 6, Some(Key::new([0xab; 16]))).expect("valid");
        let shown = format!("{config:?}");
        assert!(!shown.contains("ab"), "{shown}");
        assert!(!shown.contains("171"), "{shown}");
    }

    #[test]
    fn refuses_mismatched_inputs() {
        let config = Config::new(id(0), 2, 4, None).expect("valid");
        let sid = ServerId::new(&[1, 2]).expect("valid");
        assert_eq!(
            config.encode(&ServerId::new(&[1]).expect("valid"), &[0; 4], &[], 0),
            Err(ConfigError::ServerIdMismatch {
                expected: 2,
                got: 1
            })
        );
        assert_eq!(
            config.encode(&sid, &[0; 5], &[], 0),
            Err(ConfigError::NonceMismatch {
                expected: 4,
                got: 5
            })
        );
        assert_eq!(
            config.encode(&sid, &[0; 4], &[0; 14], 0),
            Err(ConfigError::AppendedOctets {
                plaintext_len: 6,
                appended: 14
            })
        );
        assert_eq!(
            config
                .encode(&sid, &[0; 4], &[0; 13], 0)
                .expect("20 octets fit")
                .len(),
            20
        );
    }
}
