//! Reading: a GUE packet's inner IP and UDP headers, checked, and the datagram they carry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::encap::{PROTO_IPV4, PROTO_IPV6, PROTO_UDP};
use crate::{Ecn, GUE_HEADER_LEN, IPV4_HEADER_LEN, IPV6_HEADER_LEN, UDP_HEADER_LEN};

/// A decapsulated UDP datagram: who sent it to where, and its payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    /// The inner source: the client, on the way in.
    pub source: SocketAddr,
    /// The inner destination: the VIP the client sent to, on the way in.
    pub destination: SocketAddr,
    /// The inner header's ECN codepoint.
    pub ecn: Ecn,
    /// The UDP payload: the QUIC datagram.
    pub payload: &'a [u8],
}

/// Why a received datagram is not a GUE packet carrying a UDP datagram. Each is a reason to
/// drop it and count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum DecapError {
    /// Shorter than the headers it announces.
    #[error("shorter than its headers")]
    Truncated,
    /// A GUE version other than 0 or 1, or a variant-1 packet that is not IPv4 or IPv6.
    #[error("not a GUE version this decapsulator reads")]
    Version,
    /// A GUE control message (C bit set).
    #[error("a GUE control message")]
    Control,
    /// GUE carries a protocol other than IPv4 or IPv6, or the inner IP header's version does
    /// not match it.
    #[error("GUE carries something other than IPv4 or IPv6")]
    Protocol,
    /// The inner packet is not UDP (IPv6 extension headers included).
    #[error("the inner packet is not UDP")]
    NotUdp,
    /// The inner IPv4 packet is a fragment.
    #[error("the inner packet is a fragment")]
    Fragment,
    /// The inner IP or UDP length disagrees with the octets received.
    #[error("the inner lengths disagree with the packet")]
    Length,
}

/// Reads a GUE packet (what an outer UDP datagram carries): variant 0 with any optional
/// fields (skipped), or variant 1 (the inner IP header first). The inner packet must be an
/// unfragmented IPv4 or IPv6 UDP datagram whose lengths match the octets received; checksums
/// are not verified (the outer UDP checksum covers the inner packet).
///
/// ```
/// // Variant 1: the inner IPv4 header straight away.
/// let mut packet = Vec::new();
/// qlb_gue::encapsulate(&mut packet, "192.0.2.1:1".parse()?, "192.0.2.2:2".parse()?, Default::default(), b"x")?;
/// let inner = qlb_gue::decapsulate(&packet[4..])?;
/// assert_eq!(inner.payload, b"x");
/// assert!(qlb_gue::decapsulate(&[0x00, 6, 0, 0]).is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decapsulate(packet: &[u8]) -> Result<Packet<'_>, DecapError> {
    let first = *packet.first().ok_or(DecapError::Truncated)?;
    let (proto, inner) = match first >> 6 {
        0 => {
            if first & 0x20 != 0 {
                return Err(DecapError::Control);
            }
            let hlen = usize::from(first & 0x1f) * 4;
            let proto = *packet.get(1).ok_or(DecapError::Truncated)?;
            let inner = packet
                .get(GUE_HEADER_LEN + hlen..)
                .ok_or(DecapError::Truncated)?;
            (proto, inner)
        }
        // Variant 1: the IP version nibble says which (0100 or 0110: both start 01).
        1 => match first >> 4 {
            4 => (PROTO_IPV4, packet),
            6 => (PROTO_IPV6, packet),
            _ => return Err(DecapError::Version),
        },
        _ => return Err(DecapError::Version),
    };
    match proto {
        PROTO_IPV4 => ipv4(inner),
        PROTO_IPV6 => ipv6(inner),
        _ => Err(DecapError::Protocol),
    }
}

fn ipv4(ip: &[u8]) -> Result<Packet<'_>, DecapError> {
    version(ip, 4)?;
    let header: &[u8; IPV4_HEADER_LEN] = ip
        .get(..IPV4_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecapError::Truncated)?;
    let ihl = usize::from(header[0] & 0x0f) * 4;
    if ihl < IPV4_HEADER_LEN {
        return Err(DecapError::Length);
    }
    if header[9] != PROTO_UDP {
        return Err(DecapError::NotUdp);
    }
    // More fragments, or a fragment offset.
    if u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0 {
        return Err(DecapError::Fragment);
    }
    let total = usize::from(u16::from_be_bytes([header[2], header[3]]));
    if total != ip.len() || total < ihl {
        return Err(DecapError::Length);
    }
    let src = IpAddr::V4(Ipv4Addr::new(
        header[12], header[13], header[14], header[15],
    ));
    let dst = IpAddr::V4(Ipv4Addr::new(
        header[16], header[17], header[18], header[19],
    ));
    let udp = ip.get(ihl..).ok_or(DecapError::Truncated)?;
    datagram(udp, src, dst, Ecn::from_tos(header[1]))
}

fn ipv6(ip: &[u8]) -> Result<Packet<'_>, DecapError> {
    version(ip, 6)?;
    let header: &[u8; IPV6_HEADER_LEN] = ip
        .get(..IPV6_HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(DecapError::Truncated)?;
    if header[6] != PROTO_UDP {
        return Err(DecapError::NotUdp);
    }
    let payload_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    if IPV6_HEADER_LEN + payload_len != ip.len() {
        return Err(DecapError::Length);
    }
    let traffic_class = (header[0] << 4) | (header[1] >> 4);
    let octets = |range: std::ops::Range<usize>| {
        let mut address = [0; 16];
        address.copy_from_slice(&header[range]);
        IpAddr::V6(Ipv6Addr::from(address))
    };
    let udp = ip.get(IPV6_HEADER_LEN..).ok_or(DecapError::Truncated)?;
    datagram(
        udp,
        octets(8..24),
        octets(24..40),
        Ecn::from_tos(traffic_class),
    )
}

/// Checks the IP version nibble against the protocol GUE announced.
fn version(ip: &[u8], expected: u8) -> Result<(), DecapError> {
    match ip.first() {
        None => Err(DecapError::Truncated),
        Some(first) if first >> 4 == expected => Ok(()),
        Some(_) => Err(DecapError::Protocol),
    }
}

fn datagram(udp: &[u8], src: IpAddr, dst: IpAddr, ecn: Ecn) -> Result<Packet<'_>, DecapError> {
    let header = udp.get(..UDP_HEADER_LEN).ok_or(DecapError::Truncated)?;
    let port = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    if usize::from(port(4)) != udp.len() {
        return Err(DecapError::Length);
    }
    Ok(Packet {
        source: SocketAddr::new(src, port(0)),
        destination: SocketAddr::new(dst, port(2)),
        ecn,
        payload: udp.get(UDP_HEADER_LEN..).ok_or(DecapError::Truncated)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encapsulate;

    fn packet(src: &str, dst: &str, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let (src, dst) = (src.parse().expect("src"), dst.parse().expect("dst"));
        encapsulate(&mut out, src, dst, Ecn::Ect1, payload).expect("fits");
        out
    }

    #[test]
    fn reads_what_it_writes_in_both_families_and_variants() {
        for (src, dst) in [
            ("192.0.2.1:5000", "198.51.100.2:443"),
            ("[2001:db8::1]:5000", "[2001:db8::2]:443"),
        ] {
            let out = packet(src, dst, b"quic");
            for gue in [&out[..], &out[GUE_HEADER_LEN..]] {
                let inner = decapsulate(gue).expect("decapsulates");
                assert_eq!(inner.source.to_string(), src);
                assert_eq!(inner.destination.to_string(), dst);
                assert_eq!(inner.ecn, Ecn::Ect1);
                assert_eq!(inner.payload, b"quic");
            }
        }
    }

    #[test]
    fn optional_fields_are_skipped() {
        let out = packet("192.0.2.1:1", "192.0.2.2:2", b"x");
        let mut with_fields = vec![0x02, PROTO_IPV4, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        with_fields.extend_from_slice(&out[GUE_HEADER_LEN..]);
        assert_eq!(decapsulate(&with_fields).expect("reads").payload, b"x");
    }

    #[test]
    fn malformed_packets_are_refused_with_their_reason() {
        let good = packet("192.0.2.1:1", "192.0.2.2:2", b"payload");
        let mut cases: Vec<(Vec<u8>, DecapError)> = vec![
            (vec![], DecapError::Truncated),
            (good[..good.len() - 1].to_vec(), DecapError::Length),
            (good[..20].to_vec(), DecapError::Truncated),
        ];
        let mut control = good.clone();
        control[0] = 0x20;
        cases.push((control, DecapError::Control));
        let mut version = good.clone();
        version[0] = 0x80;
        cases.push((version, DecapError::Version));
        let mut gre = good.clone();
        gre[1] = 47;
        cases.push((gre, DecapError::Protocol));
        let mut tcp = good.clone();
        tcp[GUE_HEADER_LEN + 9] = 6;
        cases.push((tcp, DecapError::NotUdp));
        let mut fragment = good.clone();
        fragment[GUE_HEADER_LEN + 6] = 0x20;
        cases.push((fragment, DecapError::Fragment));
        let mut udp_len = good.clone();
        udp_len[GUE_HEADER_LEN + IPV4_HEADER_LEN + 5] += 1;
        cases.push((udp_len, DecapError::Length));
        let mut v6_in_v4 = good.clone();
        v6_in_v4[1] = PROTO_IPV6;
        cases.push((v6_in_v4, DecapError::Protocol));
        for (bytes, reason) in cases {
            assert_eq!(decapsulate(&bytes), Err(reason), "{bytes:02x?}");
        }
    }
}
