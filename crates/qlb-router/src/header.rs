//! QUIC header parsing: the version-invariant fields of RFC 8999 and the long-header packet
//! types of QUIC v1 (RFC 9000) and v2 (RFC 9369). Only what routing needs is read; the rest of
//! the packet is protected and opaque to a load balancer.

use quic_lb::{ConnectionId, Decoder};
use thiserror::Error;

/// The version field of a Version Negotiation packet (RFC 8999 section 6).
pub const VERSION_NEGOTIATION: u32 = 0;
/// QUIC version 1 (RFC 9000).
pub const QUIC_V1: u32 = 0x0000_0001;
/// QUIC version 2 (RFC 9369).
pub const QUIC_V2: u32 = 0x6b33_43cf;

/// The longest connection ID RFC 8999 allows in a long header of any version.
const MAX_INVARIANT_CID_LEN: usize = u8::MAX as usize;
/// The header form bit: set for long headers (RFC 8999 section 5).
const LONG_FORM: u8 = 0x80;
/// The config rotation codepoint of QUIC-LB config-failover CIDs, which self-encode their
/// length (draft-ietf-quic-load-balancers-21 section 3.2).
const FAILOVER_CODEPOINT: u8 = ConnectionId::FAILOVER_CODEPOINT;

/// A QUIC packet header, as far as a load balancer reads it.
///
/// ```
/// use qlb_router::{Header, LongPacketType, QUIC_V1};
/// use quic_lb::Decoder;
///
/// // A v1 Initial: form and fixed bits, type 0; version 1; 8-octet DCID; empty SCID.
/// let mut datagram = vec![0xc0, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0];
/// datagram.resize(1200, 0);
/// let Header::Long(long) = Header::parse(&datagram, &Decoder::new())? else { panic!() };
/// assert_eq!(long.version, QUIC_V1);
/// assert_eq!(long.packet_type, LongPacketType::Initial);
/// assert_eq!(long.dcid, &[1, 2, 3, 4, 5, 6, 7, 8]);
/// assert!(long.scid.is_empty());
/// # Ok::<(), qlb_router::HeaderError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Header<'a> {
    /// A long header (first bit set): version and both connection IDs are on the wire.
    Long(LongHeader<'a>),
    /// A short header: only the DCID follows, and its length is known only to the endpoint
    /// that chose it (here: the QUIC-LB configuration it was issued under).
    Short(ShortHeader<'a>),
}

/// The fields of a long header (RFC 8999 section 5.1).
///
/// ```
/// use qlb_router::{Header, LongPacketType, QUIC_V2};
/// use quic_lb::Decoder;
///
/// // v2 type bits differ from v1: 0b10 is 0-RTT in v2 (it is Handshake in v1).
/// let datagram = [0xe0, 0x6b, 0x33, 0x43, 0xcf, 1, 0xaa, 1, 0xbb];
/// let Header::Long(long) = Header::parse(&datagram, &Decoder::new())? else { panic!() };
/// assert_eq!((long.version, long.packet_type), (QUIC_V2, LongPacketType::ZeroRtt));
/// assert_eq!((long.dcid, long.scid), (&[0xaa][..], &[0xbb][..]));
/// # Ok::<(), qlb_router::HeaderError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LongHeader<'a> {
    /// The version field.
    pub version: u32,
    /// The packet type, for the versions whose types are known.
    pub packet_type: LongPacketType,
    /// The destination connection ID.
    pub dcid: &'a [u8],
    /// The source connection ID.
    pub scid: &'a [u8],
}

/// The fields of a short header (RFC 8999 section 5.2).
///
/// ```
/// use qlb_router::Header;
/// use quic_lb::{Config, ConfigId, Decoder};
///
/// let mut decoder = Decoder::new();
/// decoder.insert(Config::new(ConfigId::new(0)?, 2, 4, None)?);
/// // Config 0 makes DCIDs of 1 + 2 + 4 octets; the packet number and payload follow.
/// let datagram = [0x40, 0x07, 1, 2, 3, 4, 5, 6, 0xff, 0xff];
/// let Header::Short(short) = Header::parse(&datagram, &decoder)? else { panic!() };
/// assert_eq!(short.dcid, Some(&datagram[1..8]));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ShortHeader<'a> {
    /// The destination connection ID, when its length is known: the length of the QUIC-LB
    /// configuration its codepoint selects, or the self-encoded length of a config-failover
    /// CID. `None` for a codepoint without a configuration.
    pub dcid: Option<&'a [u8]>,
}

/// The type of a long-header packet.
///
/// ```
/// use qlb_router::{LongPacketType, QUIC_V1, QUIC_V2};
///
/// assert_eq!(LongPacketType::of(QUIC_V1, 0xd0), LongPacketType::ZeroRtt);
/// assert_eq!(LongPacketType::of(QUIC_V2, 0xd0), LongPacketType::Initial);
/// assert_eq!(LongPacketType::of(0x1a2a_3a4a, 0xd0), LongPacketType::UnknownVersion);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum LongPacketType {
    /// Version 0: Version Negotiation, which only servers send.
    VersionNegotiation,
    /// v1 or v2 Initial: the client's first flight; its DCID is client-chosen.
    Initial,
    /// v1 or v2 0-RTT: early data, sharing the Initial's client-chosen DCID.
    ZeroRtt,
    /// v1 or v2 Handshake.
    Handshake,
    /// v1 or v2 Retry, which only servers send.
    Retry,
    /// A version whose packet types this crate does not know; routed by its DCID.
    UnknownVersion,
}

impl LongPacketType {
    /// The type that the two type bits of `first_octet` (0x30) give under `version`.
    ///
    /// ```
    /// use qlb_router::{LongPacketType, QUIC_V2};
    ///
    /// assert_eq!(LongPacketType::of(QUIC_V2, 0xc0), LongPacketType::Retry);
    /// ```
    pub fn of(version: u32, first_octet: u8) -> Self {
        let type_bits = (first_octet >> 4) & 0b11;
        match (version, type_bits) {
            (VERSION_NEGOTIATION, _) => Self::VersionNegotiation,
            (QUIC_V1, 0b00) | (QUIC_V2, 0b01) => Self::Initial,
            (QUIC_V1, 0b01) | (QUIC_V2, 0b10) => Self::ZeroRtt,
            (QUIC_V1, 0b10) | (QUIC_V2, 0b11) => Self::Handshake,
            (QUIC_V1 | QUIC_V2, _) => Self::Retry,
            _ => Self::UnknownVersion,
        }
    }

    /// Whether the DCID of this packet type was chosen by the client, so that it stays the
    /// same for the whole client first flight, whatever the client's address does.
    ///
    /// ```
    /// use qlb_router::LongPacketType;
    ///
    /// assert!(LongPacketType::ZeroRtt.has_client_chosen_dcid());
    /// assert!(!LongPacketType::Handshake.has_client_chosen_dcid());
    /// ```
    pub fn has_client_chosen_dcid(self) -> bool {
        matches!(self, Self::Initial | Self::ZeroRtt)
    }

    /// The longest connection ID this packet type may carry: 20 octets for v1 and v2
    /// (RFC 9000 section 17.2), 255 for the version-invariant header (RFC 8999 section 5.1).
    fn max_cid_len(self) -> usize {
        match self {
            Self::VersionNegotiation | Self::UnknownVersion => MAX_INVARIANT_CID_LEN,
            Self::Initial | Self::ZeroRtt | Self::Handshake | Self::Retry => ConnectionId::MAX_LEN,
        }
    }
}

/// Why a datagram does not hold a parseable QUIC header.
///
/// ```
/// use qlb_router::{Header, HeaderError};
/// use quic_lb::Decoder;
///
/// assert_eq!(Header::parse(&[], &Decoder::new()), Err(HeaderError::Empty));
/// assert_eq!(Header::parse(&[0xc0, 0, 0], &Decoder::new()), Err(HeaderError::Truncated));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Error)]
pub enum HeaderError {
    /// A zero-length datagram.
    #[error("empty datagram")]
    Empty,
    /// The datagram ends inside the header.
    #[error("datagram ends inside the QUIC header")]
    Truncated,
    /// A v1 or v2 connection ID longer than 20 octets.
    #[error("connection ID of {0} octets; QUIC v1 and v2 allow at most 20")]
    CidTooLong(u8),
}

impl<'a> Header<'a> {
    /// Reads the header at the start of `datagram`. A short header's DCID length comes from
    /// the QUIC-LB configuration its first octet selects in `decoder`.
    ///
    /// Never reads past `datagram` and never panics, whatever the bytes.
    ///
    /// ```
    /// use qlb_router::{Header, HeaderError};
    /// use quic_lb::Decoder;
    ///
    /// // A v1 Handshake claiming a 21-octet DCID.
    /// let datagram = [0xe0, 0, 0, 0, 1, 21];
    /// assert_eq!(Header::parse(&datagram, &Decoder::new()), Err(HeaderError::CidTooLong(21)));
    /// ```
    pub fn parse(datagram: &'a [u8], decoder: &Decoder) -> Result<Self, HeaderError> {
        let (&first, rest) = datagram.split_first().ok_or(HeaderError::Empty)?;
        if first & LONG_FORM != 0 {
            parse_long(first, rest).map(Header::Long)
        } else {
            parse_short(rest, decoder).map(Header::Short)
        }
    }

    /// The destination connection ID, when its extent is known.
    ///
    /// ```
    /// use qlb_router::Header;
    /// use quic_lb::Decoder;
    ///
    /// let datagram = [0xc0, 0x1a, 0x2a, 0x3a, 0x4a, 2, 9, 9, 0];
    /// assert_eq!(Header::parse(&datagram, &Decoder::new())?.dcid(), Some(&[9, 9][..]));
    /// // Codepoint 1 has no configuration here: the short header's DCID length is unknown.
    /// assert_eq!(Header::parse(&[0x40, 0x20, 1, 2], &Decoder::new())?.dcid(), None);
    /// # Ok::<(), qlb_router::HeaderError>(())
    /// ```
    pub fn dcid(&self) -> Option<&'a [u8]> {
        match self {
            Header::Long(long) => Some(long.dcid),
            Header::Short(short) => short.dcid,
        }
    }
}

fn parse_long(first: u8, rest: &[u8]) -> Result<LongHeader<'_>, HeaderError> {
    let (version, rest) = rest
        .split_first_chunk::<4>()
        .ok_or(HeaderError::Truncated)?;
    let version = u32::from_be_bytes(*version);
    let packet_type = LongPacketType::of(version, first);
    let (dcid, rest) = take_cid(rest, packet_type.max_cid_len())?;
    let (scid, _) = take_cid(rest, packet_type.max_cid_len())?;
    Ok(LongHeader {
        version,
        packet_type,
        dcid,
        scid,
    })
}

/// A length-prefixed connection ID and what follows it.
fn take_cid(bytes: &[u8], max_len: usize) -> Result<(&[u8], &[u8]), HeaderError> {
    let (&len, rest) = bytes.split_first().ok_or(HeaderError::Truncated)?;
    if usize::from(len) > max_len {
        return Err(HeaderError::CidTooLong(len));
    }
    rest.split_at_checked(usize::from(len))
        .ok_or(HeaderError::Truncated)
}

/// `after_first` is the datagram after the first octet; the DCID starts there.
fn parse_short<'a>(
    after_first: &'a [u8],
    decoder: &Decoder,
) -> Result<ShortHeader<'a>, HeaderError> {
    let &dcid_first = after_first.first().ok_or(HeaderError::Truncated)?;
    let dcid = match short_dcid_len(dcid_first, decoder) {
        Some(len) => Some(after_first.get(..len).ok_or(HeaderError::Truncated)?),
        None => None,
    };
    Ok(ShortHeader { dcid })
}

/// The length of a short-header DCID that starts with `first_octet`, if it can be known.
fn short_dcid_len(first_octet: u8, decoder: &Decoder) -> Option<usize> {
    if let Some(config) = decoder.config_for(first_octet) {
        return Some(config.cid_len());
    }
    // Config-failover CIDs MUST self-encode their length (draft section 3.2); one that does
    // not still gives the same prefix on every packet of its connection.
    let self_encoded = usize::from(first_octet & 0x1f) + 1;
    (first_octet >> 5 == FAILOVER_CODEPOINT && self_encoded <= ConnectionId::MAX_LEN)
        .then_some(self_encoded)
}
