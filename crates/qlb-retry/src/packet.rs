//! Retry packets (RFC 9000 section 17.2.5) with their integrity tag.

use thiserror::Error;

use crate::{initial::MAX_CID_LEN, version::Version};

/// Why a Retry packet cannot be built.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum RetryError {
    /// A connection ID longer than 20 octets.
    #[error("connection ID longer than {MAX_CID_LEN} octets")]
    CidTooLong,
}

/// A Retry packet answering a client Initial.
///
/// `dcid` is the client's SCID, `scid` the connection ID the client uses as DCID from now on,
/// `odcid` the DCID of the client's Initial (covered by the tag, not sent), and `unused` the
/// four unused bits of the first octet (random on the wire, fixed in tests).
///
/// ```
/// use qlb_retry::{Version, retry_packet};
///
/// // RFC 9001 Appendix A.4.
/// let odcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
/// let scid = [0xf0, 0x67, 0xa5, 0x50, 0x2a, 0x42, 0x62, 0xb5];
/// let retry = retry_packet(Version::V1, &[], &scid, &odcid, b"token", 0xf)?;
/// assert_eq!(retry.len(), 1 + 4 + 1 + 1 + 8 + 5 + 16);
/// # Ok::<(), qlb_retry::RetryError>(())
/// ```
pub fn retry_packet(
    version: Version,
    dcid: &[u8],
    scid: &[u8],
    odcid: &[u8],
    token: &[u8],
    unused: u8,
) -> Result<Vec<u8>, RetryError> {
    let (Ok(dcid_len), Ok(scid_len), Ok(odcid_len)) = (
        short_cid_len(dcid),
        short_cid_len(scid),
        short_cid_len(odcid),
    ) else {
        return Err(RetryError::CidTooLong);
    };
    // The pseudo-packet is the ODCID, length-prefixed, then the packet: build both in one
    // buffer and cut the prefix off after tagging.
    let prefix = 1 + odcid.len();
    let mut out = Vec::with_capacity(prefix + 7 + dcid.len() + scid.len() + token.len() + 16);
    out.push(odcid_len);
    out.extend_from_slice(odcid);
    out.push(0xc0 | (version.retry_type() << 4) | (unused & 0x0f));
    out.extend_from_slice(&version.wire().to_be_bytes());
    out.push(dcid_len);
    out.extend_from_slice(dcid);
    out.push(scid_len);
    out.extend_from_slice(scid);
    out.extend_from_slice(token);
    let tag = version.retry_tag(&out);
    out.extend_from_slice(&tag);
    out.drain(..prefix);
    Ok(out)
}

fn short_cid_len(cid: &[u8]) -> Result<u8, RetryError> {
    match u8::try_from(cid.len()) {
        Ok(len) if usize::from(len) <= MAX_CID_LEN => Ok(len),
        _ => Err(RetryError::CidTooLong),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODCID: &str = "8394c8f03e515708";
    const SCID: &str = "f067a5502a4262b5";

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    /// RFC 9001 Appendix A.4 and RFC 9369 Appendix A.4: the same Retry in v1 and v2.
    #[test]
    fn rfc_retry_vectors() {
        for (version, first, expected) in [
            (
                Version::V1,
                0x0f,
                "ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba",
            ),
            (
                Version::V2,
                0x0f,
                "cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6",
            ),
        ] {
            let retry = retry_packet(version, &[], &unhex(SCID), &unhex(ODCID), b"token", first)
                .expect("valid CIDs");
            assert_eq!(hex::encode(retry), expected, "{version:?}");
        }
    }

    #[test]
    fn long_cids_are_refused() {
        let long = [0u8; 21];
        for (dcid, scid, odcid) in [
            (&long[..], &[][..], &[][..]),
            (&[], &long, &[]),
            (&[], &[], &long),
        ] {
            assert_eq!(
                retry_packet(Version::V1, dcid, scid, odcid, b"", 0),
                Err(RetryError::CidTooLong)
            );
        }
    }
}
