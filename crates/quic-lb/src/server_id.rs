//! The server ID a QUIC-LB connection ID carries.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use crate::cipher::Block;
use crate::error::ConfigError;
use crate::octets::Octets;

/// The shortest and the longest server ID a configuration may have (draft-21 section 5).
pub(crate) const MIN_SERVER_ID_LEN: usize = 1;
pub(crate) const MAX_SERVER_ID_LEN: usize = 15;

/// A server ID: 1 to 15 opaque octets, stored inline (no heap).
///
/// A configuration fixes the length of its server IDs; each server of a fleet holds a unique
/// one per configuration (draft section 5.1).
///
/// ```
/// use quic_lb::ServerId;
///
/// let sid: ServerId = "0a0b".parse()?;
/// assert_eq!(sid.as_ref(), &[0x0a, 0x0b]);
/// assert_eq!(sid.to_string(), "0a0b");
/// # Ok::<(), quic_lb::ConfigError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(Octets<MAX_SERVER_ID_LEN>);

impl ServerId {
    /// Copies a server ID from `bytes`, which must hold 1 to 15 octets.
    ///
    /// ```
    /// use quic_lb::ServerId;
    ///
    /// assert!(ServerId::new(&[1, 2]).is_ok());
    /// assert!(ServerId::new(&[]).is_err());
    /// ```
    pub fn new(bytes: &[u8]) -> Result<Self, ConfigError> {
        if bytes.len() < MIN_SERVER_ID_LEN {
            return Err(ConfigError::ServerIdLen(bytes.len()));
        }
        Octets::copy_from(bytes)
            .map(Self)
            .ok_or(ConfigError::ServerIdLen(bytes.len()))
    }
}

impl ServerId {
    /// Copies a server ID whose length the caller has validated (1..=15 octets); a longer
    /// input is cut to 15 octets rather than refused.
    pub(crate) fn from_validated(bytes: &[u8]) -> Self {
        let mut fixed = [0u8; MAX_SERVER_ID_LEN];
        let len = bytes.len().min(MAX_SERVER_ID_LEN);
        fixed[..len].copy_from_slice(&bytes[..len]);
        Self(Octets::from_parts(fixed, len))
    }
}

impl ServerId {
    /// The first `len` (validated, 1..=15) octets of a decrypted block's head, with a
    /// fixed-size copy: the decode path avoids variable-length copies.
    pub(crate) fn from_head(head: &Block, len: usize) -> Self {
        let mut fixed = [0u8; MAX_SERVER_ID_LEN];
        fixed.copy_from_slice(&head[..MAX_SERVER_ID_LEN]);
        Self(Octets::from_parts(fixed, len))
    }
}

impl Deref for ServerId {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl AsRef<[u8]> for ServerId {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl FromStr for ServerId {
    type Err = ConfigError;

    /// Parses hex, as in configuration files and `qlb cid`.
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        let octets = Octets::<MAX_SERVER_ID_LEN>::from_hex(s)
            .map_err(ConfigError::ServerIdLen)?
            .ok_or(ConfigError::ServerIdHex)?;
        Self::new(octets.as_slice())
    }
}

impl fmt::Display for ServerId {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_hex(f)
    }
}

impl fmt::Debug for ServerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerId(")?;
        self.0.fmt_hex(f)?;
        f.write_str(")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        assert_eq!("00ff".parse::<ServerId>(), ServerId::new(&[0, 0xff]));
        assert_eq!("0".parse::<ServerId>(), Err(ConfigError::ServerIdHex));
        assert_eq!("zz".parse::<ServerId>(), Err(ConfigError::ServerIdHex));
        assert_eq!("".parse::<ServerId>(), Err(ConfigError::ServerIdLen(0)));
        assert_eq!(
            "00".repeat(16).parse::<ServerId>(),
            Err(ConfigError::ServerIdLen(16))
        );
        assert_eq!(ServerId::new(&[0; 16]), Err(ConfigError::ServerIdLen(16)));
    }
}
