//! Writing: the GUE header and the inner IP and UDP headers in front of a datagram.

use std::net::{IpAddr, SocketAddr};

use crate::checksum::Sum;
use crate::{Ecn, GUE_HEADER_LEN, INNER_TTL, IPV4_HEADER_LEN, IPV6_HEADER_LEN, UDP_HEADER_LEN};

/// IP protocol numbers: the GUE header's protocol field and the inner header's.
pub(crate) const PROTO_IPV4: u8 = 4;
pub(crate) const PROTO_IPV6: u8 = 41;
pub(crate) const PROTO_UDP: u8 = 17;

/// Why a datagram cannot be encapsulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EncapError {
    /// The inner source and destination are of different address families.
    #[error("the inner source and destination are of different address families")]
    MixedFamilies,
    /// The datagram does not fit an inner UDP datagram.
    #[error("a datagram of {0} octets does not fit an inner UDP datagram")]
    TooLong(usize),
}

/// Octets that encapsulation adds in front of a datagram whose inner addresses are of
/// `address`'s family: the GUE header, the inner IP header and the inner UDP header (32 for
/// IPv4, 52 for IPv6). The outer IP and UDP headers come on top.
pub fn overhead(address: SocketAddr) -> usize {
    GUE_HEADER_LEN
        + UDP_HEADER_LEN
        + match address {
            SocketAddr::V4(_) => IPV4_HEADER_LEN,
            SocketAddr::V6(_) => IPV6_HEADER_LEN,
        }
}

/// Appends to `out` the GUE packet carrying `payload` as a UDP datagram from `source` to
/// `destination` with ECN codepoint `ecn`: what the outer UDP datagram carries.
///
/// ```
/// let mut out = Vec::new();
/// let client = "[2001:db8::7]:50000".parse()?;
/// let vip = "[2001:db8::1]:443".parse()?;
/// qlb_gue::encapsulate(&mut out, client, vip, qlb_gue::Ecn::NotEct, &[0x40; 100])?;
/// // GUE variant 0, protocol 41 (IPv6), then an IPv6 header.
/// assert_eq!(&out[..5], &[0x00, 41, 0x00, 0x00, 0x60]);
/// assert_eq!(out.len(), 4 + 40 + 8 + 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encapsulate(
    out: &mut Vec<u8>,
    source: SocketAddr,
    destination: SocketAddr,
    ecn: Ecn,
    payload: &[u8],
) -> Result<(), EncapError> {
    let udp_len = UDP_HEADER_LEN + payload.len();
    let too_long = EncapError::TooLong(payload.len());
    let udp_len16 = u16::try_from(udp_len).map_err(|_| too_long)?;
    let udp_checksum = |sum: Sum| {
        let sum = sum
            .add_ip(source.ip())
            .add_ip(destination.ip())
            .add_u16(u16::from(PROTO_UDP))
            .add_u16(udp_len16)
            .add_u16(source.port())
            .add_u16(destination.port())
            .add_u16(udp_len16)
            .add(payload);
        match sum.finish() {
            // Zero means "no checksum" in IPv4 and is invalid in IPv6 (RFC 768, RFC 8200).
            0 => 0xffff,
            checksum => checksum,
        }
    };
    match (source.ip(), destination.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let total = u16::try_from(IPV4_HEADER_LEN + udp_len).map_err(|_| too_long)?;
            out.reserve(GUE_HEADER_LEN + IPV4_HEADER_LEN + udp_len);
            out.extend_from_slice(&[0x00, PROTO_IPV4, 0x00, 0x00]);
            let mut ip = [0u8; IPV4_HEADER_LEN];
            ip[0] = 0x45;
            ip[1] = ecn.bits();
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            // Identification 0 with don't-fragment set (RFC 6864 section 4.1).
            ip[6] = 0x40;
            ip[8] = INNER_TTL;
            ip[9] = PROTO_UDP;
            ip[12..16].copy_from_slice(&src.octets());
            ip[16..20].copy_from_slice(&dst.octets());
            let checksum = Sum::default().add(&ip).finish();
            ip[10..12].copy_from_slice(&checksum.to_be_bytes());
            out.extend_from_slice(&ip);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            out.reserve(GUE_HEADER_LEN + IPV6_HEADER_LEN + udp_len);
            out.extend_from_slice(&[0x00, PROTO_IPV6, 0x00, 0x00]);
            let mut ip = [0u8; IPV6_HEADER_LEN];
            // Version 6, traffic class (DSCP 0, then ECN: bits 4-5 of the second octet),
            // flow label 0.
            ip[0] = 0x60;
            ip[1] = ecn.bits() << 4;
            ip[4..6].copy_from_slice(&udp_len16.to_be_bytes());
            ip[6] = PROTO_UDP;
            ip[7] = INNER_TTL;
            ip[8..24].copy_from_slice(&src.octets());
            ip[24..40].copy_from_slice(&dst.octets());
            out.extend_from_slice(&ip);
        }
        _ => return Err(EncapError::MixedFamilies),
    }
    out.extend_from_slice(&source.port().to_be_bytes());
    out.extend_from_slice(&destination.port().to_be_bytes());
    out.extend_from_slice(&udp_len16.to_be_bytes());
    out.extend_from_slice(&udp_checksum(Sum::default()).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_headers_are_canonical_and_checksummed() {
        let mut out = Vec::new();
        let src: SocketAddr = "10.0.0.1:1234".parse().expect("address");
        let dst: SocketAddr = "10.0.0.2:443".parse().expect("address");
        encapsulate(&mut out, src, dst, Ecn::Ce, b"hello").expect("fits");
        assert_eq!(&out[..4], &[0, 4, 0, 0]);
        let ip = &out[4..24];
        assert_eq!(ip[0], 0x45);
        assert_eq!(ip[1], 0b11);
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]), 20 + 8 + 5);
        assert_eq!(&ip[4..9], &[0, 0, 0x40, 0, 64]);
        // A header with its checksum in sums to zero.
        assert_eq!(Sum::default().add(ip).finish(), 0);
        let udp = &out[24..32];
        assert_eq!(udp[..6], [0x04, 0xd2, 0x01, 0xbb, 0, 13]);
        // The UDP checksum checks out over the pseudo-header.
        let check = Sum::default()
            .add_ip(src.ip())
            .add_ip(dst.ip())
            .add_u16(17)
            .add_u16(13)
            .add(&out[24..])
            .finish();
        assert_eq!(check, 0);
    }

    #[test]
    fn mixed_families_and_oversized_datagrams_are_refused() {
        let mut out = Vec::new();
        let v4: SocketAddr = "10.0.0.1:1".parse().expect("address");
        let v6: SocketAddr = "[::1]:1".parse().expect("address");
        assert_eq!(
            encapsulate(&mut out, v4, v6, Ecn::NotEct, b""),
            Err(EncapError::MixedFamilies)
        );
        let big = vec![0; 65_535 - 20 - 8 + 1];
        assert_eq!(
            encapsulate(&mut out, v4, v4, Ecn::NotEct, &big),
            Err(EncapError::TooLong(big.len()))
        );
        // IPv6 has no total length: only the UDP length bounds it.
        let fits = vec![0; 65_535 - 8];
        assert!(encapsulate(&mut out, v6, v6, Ecn::NotEct, &fits).is_ok());
    }
}
