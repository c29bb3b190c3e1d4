//! Connection IDs as QUIC v1 bounds them: at most 20 octets, stored inline.

use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use rand::Rng;

use crate::error::ConnectionIdError;
use crate::octets::Octets;

/// A connection ID of 0 to 20 octets, stored inline (no heap).
///
/// ```
/// use quic_lb::ConnectionId;
///
/// let cid: ConnectionId = "07c4605e4504cc4f".parse()?;
/// assert_eq!(cid.len(), 8);
/// assert_eq!(cid.codepoint(), Some(0));
/// assert_eq!(cid.to_string(), "07c4605e4504cc4f");
/// # Ok::<(), quic_lb::ConnectionIdError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(Octets<{ ConnectionId::MAX_LEN }>);

impl ConnectionId {
    /// The longest connection ID QUIC v1 allows (RFC 9000 section 17.2).
    ///
    /// ```
    /// assert!(quic_lb::ConnectionId::new(&[0; quic_lb::ConnectionId::MAX_LEN]).is_ok());
    /// ```
    pub const MAX_LEN: usize = 20;
    /// The shortest config-failover CID the draft recommends (section 3.2).
    ///
    /// ```
    /// use quic_lb::ConnectionId;
    ///
    /// assert_eq!(ConnectionId::failover(1).len(), ConnectionId::MIN_FAILOVER_LEN);
    /// ```
    pub const MIN_FAILOVER_LEN: usize = 8;
    /// The reserved config rotation codepoint 0b111.
    ///
    /// ```
    /// use quic_lb::ConnectionId;
    ///
    /// assert_eq!(ConnectionId::new(&[0xe5])?.codepoint(), Some(ConnectionId::FAILOVER_CODEPOINT));
    /// # Ok::<(), quic_lb::ConnectionIdError>(())
    /// ```
    pub const FAILOVER_CODEPOINT: u8 = 7;

    /// Copies up to 20 octets.
    ///
    /// ```
    /// use quic_lb::ConnectionId;
    ///
    /// assert_eq!(ConnectionId::new(&[1, 2, 3])?.as_ref(), &[1, 2, 3]);
    /// assert!(ConnectionId::new(&[0; 21]).is_err());
    /// # Ok::<(), quic_lb::ConnectionIdError>(())
    /// ```
    pub fn new(bytes: &[u8]) -> Result<Self, ConnectionIdError> {
        Octets::copy_from(bytes)
            .map(Self)
            .ok_or(ConnectionIdError::TooLong(bytes.len()))
    }

    pub(crate) fn from_array(bytes: [u8; Self::MAX_LEN], len: usize) -> Self {
        Self(Octets::from_parts(bytes, len))
    }

    /// A random config-failover CID (draft section 3.2), for a server without a usable
    /// configuration: codepoint 0b111, its length self-encoded, every other octet random.
    /// `len` is raised to at least 8 and capped at 20.
    ///
    /// Load balancers never decode these; they route them by their fallback.
    ///
    /// ```
    /// use quic_lb::ConnectionId;
    ///
    /// let cid = ConnectionId::failover(4);
    /// assert_eq!(cid.len(), 8);
    /// assert_eq!(cid[0], 0xe7);
    /// assert_eq!(cid.codepoint(), Some(ConnectionId::FAILOVER_CODEPOINT));
    /// ```
    pub fn failover(len: usize) -> Self {
        let len = len.clamp(Self::MIN_FAILOVER_LEN, Self::MAX_LEN);
        let mut bytes = [0u8; Self::MAX_LEN];
        rand::rng().fill_bytes(&mut bytes[1..len]);
        bytes[0] = first_octet(Self::FAILOVER_CODEPOINT, (len - 1) as u8);
        Self::from_array(bytes, len)
    }

    /// The config rotation codepoint in the top three bits of the first octet, if any octet.
    ///
    /// ```
    /// assert_eq!(quic_lb::ConnectionId::new(&[0x45])?.codepoint(), Some(2));
    /// # Ok::<(), quic_lb::ConnectionIdError>(())
    /// ```
    #[inline]
    pub fn codepoint(&self) -> Option<u8> {
        self.first().map(|b| b >> 5)
    }
}

impl Deref for ConnectionId {
    type Target = [u8];

    #[inline]
    fn deref(&self) -> &[u8] {
        self.0.as_slice()
    }
}

impl AsRef<[u8]> for ConnectionId {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl FromStr for ConnectionId {
    type Err = ConnectionIdError;

    /// Parses hex.
    fn from_str(s: &str) -> Result<Self, ConnectionIdError> {
        Octets::<{ Self::MAX_LEN }>::from_hex(s)
            .map_err(ConnectionIdError::TooLong)?
            .map(Self)
            .ok_or(ConnectionIdError::Hex)
    }
}

impl fmt::Display for ConnectionId {
    /// Lower-case hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_hex(f)
    }
}

impl fmt::Debug for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectionId(")?;
        self.0.fmt_hex(f)?;
        f.write_str(")")
    }
}

/// A CID's first octet: the codepoint in the top three bits, `low_bits` (the length, or
/// random bits) in the other five.
pub(crate) fn first_octet(codepoint: u8, low_bits: u8) -> u8 {
    (codepoint << 5) | (low_bits & 0x1f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failover_cids_self_encode_their_length_and_differ() {
        for len in 0..=25 {
            let cid = ConnectionId::failover(len);
            let expect = len.clamp(8, 20);
            assert_eq!(cid.len(), expect);
            assert_eq!(usize::from(cid[0] & 0x1f), expect - 1);
            assert_eq!(cid.codepoint(), Some(7));
        }
        assert_ne!(ConnectionId::failover(8), ConnectionId::failover(8));
    }

    #[test]
    fn parse_refuses_bad_hex_and_long_ids() {
        assert_eq!("0".parse::<ConnectionId>(), Err(ConnectionIdError::Hex));
        assert_eq!("zz".parse::<ConnectionId>(), Err(ConnectionIdError::Hex));
        assert_eq!(
            "00".repeat(21).parse::<ConnectionId>(),
            Err(ConnectionIdError::TooLong(21))
        );
        assert_eq!("".parse::<ConnectionId>().map(|c| c.len()), Ok(0));
    }
}
