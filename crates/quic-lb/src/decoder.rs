//! The load balancer side: extracting the server ID from a destination connection ID
//! (draft section 5.5).

use crate::config::{Config, ConfigId};
use crate::error::Unroutable;
use crate::server_id::ServerId;

/// What a routable connection ID says: which configuration, which server.
///
/// ```
/// use quic_lb::{Config, ConfigId, Decoder};
///
/// let mut decoder = Decoder::new();
/// decoder.insert(Config::new(ConfigId::new(2)?, 1, 4, None)?);
/// let decoded = decoder.decode(&[0x45, 0x07, 1, 2, 3, 4])?;
/// assert_eq!((decoded.config_id.get(), decoded.server_id.as_ref()), (2, &[7][..]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Decoded {
    /// The config rotation codepoint the CID was issued under.
    pub config_id: ConfigId,
    /// The server ID it carries.
    pub server_id: ServerId,
}

/// Holds up to seven configurations, one per config rotation codepoint, and decodes
/// destination connection IDs with them. Decoding never allocates.
///
/// During key rotation the old and the new configuration sit side by side at different
/// codepoints; the first octet of each CID says which one applies (draft section 3.1).
///
/// ```
/// use quic_lb::{Config, ConfigId, Decoder, Key, Unroutable};
///
/// let key: Key = "8f95f09245765f80256934e50c66207f".parse()?;
/// let mut decoder = Decoder::new();
/// decoder.insert(Config::new(ConfigId::new(0)?, 3, 4, Some(key))?);
///
/// // Draft-21 appendix B.2, first row.
/// let decoded = decoder.decode(&hex::decode("0720b1d07b359d3c")?)?;
/// assert_eq!(decoded.server_id.to_string(), "ed793a");
///
/// assert_eq!(decoder.decode(&[0xe0, 1, 2, 3]), Err(Unroutable::FailoverCodepoint));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    configs: [Option<Config>; ConfigId::COUNT],
}

impl Decoder {
    /// A decoder with no configuration: every CID is unroutable.
    ///
    /// ```
    /// let decoder = quic_lb::Decoder::new();
    /// assert!(decoder.decode(&[0; 8]).is_err());
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Installs `config` at its codepoint, returning the one it replaces.
    ///
    /// ```
    /// use quic_lb::{Config, ConfigId, Decoder};
    ///
    /// let mut decoder = Decoder::new();
    /// assert!(decoder.insert(Config::new(ConfigId::new(1)?, 2, 6, None)?).is_none());
    /// assert!(decoder.insert(Config::new(ConfigId::new(1)?, 3, 6, None)?).is_some());
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn insert(&mut self, config: Config) -> Option<Config> {
        let slot = usize::from(config.id().get());
        self.configs[slot].replace(config)
    }

    /// Removes the configuration at `id`: its CIDs become unroutable.
    ///
    /// ```
    /// use quic_lb::{Config, ConfigId, Decoder};
    ///
    /// let mut decoder = Decoder::new();
    /// decoder.insert(Config::new(ConfigId::new(1)?, 2, 6, None)?);
    /// assert!(decoder.remove(ConfigId::new(1)?).is_some());
    /// assert!(decoder.get(ConfigId::new(1)?).is_none());
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn remove(&mut self, id: ConfigId) -> Option<Config> {
        self.configs[usize::from(id.get())].take()
    }

    /// The configuration at `id`, if one is installed.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId, Decoder};
    /// let mut decoder = Decoder::new();
    /// decoder.insert(Config::new(ConfigId::new(2)?, 2, 6, None)?);
    /// assert_eq!(decoder.get(ConfigId::new(2)?).map(|c| c.nonce_len()), Some(6));
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    #[inline]
    pub fn get(&self, id: ConfigId) -> Option<&Config> {
        self.configs[usize::from(id.get())].as_ref()
    }

    /// The installed configurations, by codepoint.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId, Decoder};
    /// let mut decoder = Decoder::new();
    /// decoder.insert(Config::new(ConfigId::new(2)?, 2, 6, None)?);
    /// decoder.insert(Config::new(ConfigId::new(0)?, 2, 6, None)?);
    /// let ids: Vec<u8> = decoder.configs().map(|c| c.id().get()).collect();
    /// assert_eq!(ids, [0, 2]);
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    pub fn configs(&self) -> impl Iterator<Item = &Config> {
        self.configs.iter().flatten()
    }

    /// The configuration a CID starting with `first_octet` was issued under, if installed.
    /// For a short header its [`Config::cid_len`] tells how many octets the DCID spans.
    ///
    /// ```
    /// # use quic_lb::{Config, ConfigId, Decoder};
    /// let mut decoder = Decoder::new();
    /// decoder.insert(Config::new(ConfigId::new(2)?, 2, 6, None)?);
    /// assert_eq!(decoder.config_for(0x48).map(Config::cid_len), Some(9));
    /// assert!(decoder.config_for(0xe8).is_none());
    /// # Ok::<(), quic_lb::ConfigError>(())
    /// ```
    #[inline]
    pub fn config_for(&self, first_octet: u8) -> Option<&Config> {
        self.configs.get(usize::from(first_octet >> 5))?.as_ref()
    }

    /// Extracts the server ID from a destination connection ID.
    ///
    /// `dcid` is either the exact DCID of a long header or, for a short header whose DCID
    /// length the wire does not give, the packet bytes starting at the DCID: only the first
    /// `cid_len` octets of the matching configuration are read, and the rest is ignored
    /// (appended server octets, or the remainder of the packet).
    ///
    /// The result says only what the CID encodes; whether a server holds that ID is the
    /// caller's question.
    ///
    /// ```
    /// use quic_lb::{Config, ConfigId, Decoder, Unroutable};
    ///
    /// let mut decoder = Decoder::new();
    /// decoder.insert(Config::new(ConfigId::new(0)?, 3, 4, None)?);
    /// let short_header_tail = [0x00, 1, 2, 3, 4, 5, 6, 7, 0xaa, 0xbb, 0xcc];
    /// assert_eq!(decoder.decode(&short_header_tail)?.server_id.as_ref(), &[1, 2, 3]);
    /// assert_eq!(decoder.decode(&[]), Err(Unroutable::Empty));
    /// assert_eq!(decoder.decode(&[0x20; 8]), Err(Unroutable::UnknownConfig(1)));
    /// assert_eq!(
    ///     decoder.decode(&[0, 1, 2]),
    ///     Err(Unroutable::TooShort { needed: 8, got: 3 })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode(&self, dcid: &[u8]) -> Result<Decoded, Unroutable> {
        let first = *dcid.first().ok_or(Unroutable::Empty)?;
        let codepoint = first >> 5;
        let config = self
            .configs
            .get(usize::from(codepoint))
            .ok_or(Unroutable::FailoverCodepoint)?;
        let config = config
            .as_ref()
            .ok_or(Unroutable::UnknownConfig(codepoint))?;
        let block = dcid.get(1..config.cid_len()).ok_or(Unroutable::TooShort {
            needed: config.cid_len(),
            got: dcid.len(),
        })?;
        Ok(Decoded {
            config_id: config.id(),
            server_id: config.server_id_from_block(block),
        })
    }
}
