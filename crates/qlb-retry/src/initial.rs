//! A client Initial's long header up to its token (RFC 9000 section 17.2.2, RFC 9369).

use thiserror::Error;

use crate::{varint, version::Version};

/// The longest connection ID QUIC v1 and v2 allow (RFC 9000 section 17.2).
pub(crate) const MAX_CID_LEN: usize = 20;

/// The unprotected fields of a client Initial that Retry needs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Initial<'a> {
    /// The version of the packet.
    pub version: Version,
    /// The destination connection ID: the client's choice, or a Retry's SCID.
    pub dcid: &'a [u8],
    /// The source connection ID: the DCID of the Retry that answers it.
    pub scid: &'a [u8],
    /// The token: empty, or from a Retry or a NEW_TOKEN frame.
    pub token: &'a [u8],
    /// Where the token length starts and where the token ends, for [`crate::replace_token`].
    pub(crate) token_span: (usize, usize),
}

/// Why a datagram does not start with a client Initial of a known version.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum InitialError {
    /// A short header, or a long header without the fixed bit.
    #[error("not a long header")]
    NotLongHeader,
    /// A version other than v1 and v2 (including Version Negotiation).
    #[error("version {0:#010x} has no known Initial")]
    UnknownVersion(u32),
    /// A long header of another type.
    #[error("not an Initial packet")]
    NotInitial,
    /// A connection ID longer than 20 octets.
    #[error("connection ID longer than {MAX_CID_LEN} octets")]
    CidTooLong,
    /// The datagram ends inside the header.
    #[error("truncated Initial header")]
    Truncated,
}

impl<'a> Initial<'a> {
    /// Reads the first packet of `datagram` as far as its token.
    ///
    /// ```
    /// use qlb_retry::{Initial, Version};
    ///
    /// // v1 Initial: DCID 0x0a0b, SCID 0x0c, token "hi" (length 2), then the rest.
    /// let datagram = [0xc0, 0, 0, 0, 1, 2, 0x0a, 0x0b, 1, 0x0c, 2, b'h', b'i', 0x41, 0x00];
    /// let initial = Initial::parse(&datagram)?;
    /// assert_eq!(initial.version, Version::V1);
    /// assert_eq!((initial.dcid, initial.scid, initial.token), (&[10, 11][..], &[12][..], &b"hi"[..]));
    /// # Ok::<(), qlb_retry::InitialError>(())
    /// ```
    pub fn parse(datagram: &'a [u8]) -> Result<Self, InitialError> {
        let (&first, rest) = datagram.split_first().ok_or(InitialError::Truncated)?;
        if first & 0xc0 != 0xc0 {
            return Err(InitialError::NotLongHeader);
        }
        let (wire, rest) = take(rest, 4)?;
        let wire = u32::from_be_bytes([wire[0], wire[1], wire[2], wire[3]]);
        let version = Version::from_wire(wire).ok_or(InitialError::UnknownVersion(wire))?;
        if (first >> 4) & 0b11 != version.initial_type() {
            return Err(InitialError::NotInitial);
        }
        let (dcid, rest) = cid(rest)?;
        let (scid, rest) = cid(rest)?;
        let token_len_at = datagram.len() - rest.len();
        let (token_len, used) = varint::decode(rest).ok_or(InitialError::Truncated)?;
        let token_len = usize::try_from(token_len).map_err(|_| InitialError::Truncated)?;
        let (token, rest) = take(&rest[used..], token_len)?;
        Ok(Self {
            version,
            dcid,
            scid,
            token,
            token_span: (token_len_at, datagram.len() - rest.len()),
        })
    }
}

fn take(buf: &[u8], len: usize) -> Result<(&[u8], &[u8]), InitialError> {
    if buf.len() < len {
        return Err(InitialError::Truncated);
    }
    Ok(buf.split_at(len))
}

fn cid(buf: &[u8]) -> Result<(&[u8], &[u8]), InitialError> {
    let (&len, rest) = buf.split_first().ok_or(InitialError::Truncated)?;
    let len = usize::from(len);
    if len > MAX_CID_LEN {
        return Err(InitialError::CidTooLong);
    }
    take(rest, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start of RFC 9001 Appendix A.2's client Initial (v1) and RFC 9369 Appendix A.2's
    /// (v2): DCID 8394c8f03e515708, empty SCID, empty token.
    #[test]
    fn rfc_client_initials_parse() {
        for (hex, version) in [
            ("c000000001088394c8f03e5157080000449e", Version::V1),
            ("d36b3343cf088394c8f03e5157080000449e", Version::V2),
        ] {
            let datagram = hex::decode(hex).expect("hex");
            let initial = Initial::parse(&datagram).expect("an Initial");
            assert_eq!(initial.version, version);
            assert_eq!(initial.dcid, hex::decode("8394c8f03e515708").expect("hex"));
            assert!(initial.scid.is_empty() && initial.token.is_empty());
        }
    }

    #[test]
    fn other_packets_are_refused() {
        let v1_handshake = [0xe0, 0, 0, 0, 1, 0, 0, 0];
        assert_eq!(Initial::parse(&v1_handshake), Err(InitialError::NotInitial));
        let v2_initial_type_of_v1 = [0xc0, 0x6b, 0x33, 0x43, 0xcf, 0, 0, 0];
        assert_eq!(
            Initial::parse(&v2_initial_type_of_v1),
            Err(InitialError::NotInitial)
        );
        assert_eq!(
            Initial::parse(&[0xc0, 0xff, 0, 0, 0x1d, 0, 0, 0]),
            Err(InitialError::UnknownVersion(0xff00_001d))
        );
        assert_eq!(
            Initial::parse(&[0x40, 1, 2]),
            Err(InitialError::NotLongHeader)
        );
        let long_cid = [0xc0, 0, 0, 0, 1, 21];
        assert_eq!(Initial::parse(&long_cid), Err(InitialError::CidTooLong));
        // A token length running past the datagram.
        let short_token = [0xc0, 0, 0, 0, 1, 0, 0, 5, 1, 2];
        assert_eq!(Initial::parse(&short_token), Err(InitialError::Truncated));
    }

    proptest::proptest! {
        #[test]
        fn any_prefix_of_any_bytes_parses_or_errs(bytes: Vec<u8>) {
            for end in 0..=bytes.len() {
                let _ = Initial::parse(&bytes[..end]);
            }
        }
    }
}
