//! The path probe's packets, without I/O: a datagram that makes a QUIC server answer with a
//! Version Negotiation packet (RFC 8999 section 6, RFC 9000 section 6), and the check that a
//! datagram is the answer to it. quinn has no path-probe API; an answer from the peer's
//! address proves the path carries datagrams both ways and times the round trip.

/// A server drops datagrams shorter than this that name a version it does not support
/// (RFC 9000 sections 5.2.2 and 14.1), so the probe is padded to it.
pub(super) const PROBE_LEN: usize = 1200;
/// The probe's destination connection ID length: any length from 8 to 20 is safe with every
/// QUIC v1 server (quinn refuses longer ones).
const DCID_LEN: usize = 16;
const SCID_LEN: usize = 8;

/// One Version-Negotiation-eliciting probe. Random connection IDs make its answer
/// unguessable to an off-path attacker and tell retransmissions apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct VnProbe {
    first: u8,
    version: u32,
    dcid: [u8; DCID_LEN],
    scid: [u8; SCID_LEN],
}

impl VnProbe {
    /// A probe with fresh random fields.
    pub(super) fn random() -> Self {
        Self::new(
            rand::random(),
            rand::random(),
            rand::random(),
            rand::random(),
        )
    }

    /// A probe from (random) field values, made valid: long header, reserved version,
    /// a destination CID no QUIC-LB load balancer tries to decode.
    fn new(first: u8, version: u32, mut dcid: [u8; DCID_LEN], scid: [u8; SCID_LEN]) -> Self {
        // QUIC-LB's config rotation codepoint 0b111 marks a CID that encodes no server:
        // a load balancer routes it with its fallback instead of decoding random octets.
        dcid[0] |= 0xe0;
        Self {
            // Long header form and the fixed bit; the rest is free for an unknown version.
            first: 0xc0 | (first & 0x3f),
            // A reserved version 0x?a?a?a?a (RFC 9000 section 15): no server supports it.
            version: (version & 0xf0f0_f0f0) | 0x0a0a_0a0a,
            dcid,
            scid,
        }
    }

    /// The datagram to send: the long header, then zero padding to [`PROBE_LEN`].
    pub(super) fn datagram(&self) -> Vec<u8> {
        let mut datagram = Vec::with_capacity(PROBE_LEN);
        datagram.push(self.first);
        datagram.extend_from_slice(&self.version.to_be_bytes());
        datagram.push(DCID_LEN as u8);
        datagram.extend_from_slice(&self.dcid);
        datagram.push(SCID_LEN as u8);
        datagram.extend_from_slice(&self.scid);
        datagram.resize(PROBE_LEN, 0);
        datagram
    }

    /// Whether `datagram` is a Version Negotiation packet answering this probe: its
    /// connection IDs are the probe's, swapped, and a non-empty version list follows.
    pub(super) fn is_answered_by(&self, datagram: &[u8]) -> bool {
        let Some((&first, rest)) = datagram.split_first() else {
            return false;
        };
        let Some((version, rest)) = rest.split_first_chunk::<4>() else {
            return false;
        };
        if first & 0x80 == 0 || *version != [0; 4] {
            return false;
        }
        let Some((dcid, rest)) = connection_id(rest) else {
            return false;
        };
        let Some((scid, versions)) = connection_id(rest) else {
            return false;
        };
        dcid == self.scid && scid == self.dcid && !versions.is_empty() && versions.len() % 4 == 0
    }
}

/// A length-prefixed connection ID and what follows it.
fn connection_id(buf: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&len, rest) = buf.split_first()?;
    rest.split_at_checked(usize::from(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe() -> VnProbe {
        VnProbe::new(0xff, 0x1234_5678, [0x11; DCID_LEN], [0x22; SCID_LEN])
    }

    /// A Version Negotiation packet as a server writes it for `probe`.
    fn answer(probe: &VnProbe) -> Vec<u8> {
        let mut packet = vec![0x80 | 0x2a, 0, 0, 0, 0];
        packet.push(SCID_LEN as u8);
        packet.extend_from_slice(&probe.scid);
        packet.push(DCID_LEN as u8);
        packet.extend_from_slice(&probe.dcid);
        packet.extend_from_slice(&[0x0a, 0x1a, 0x2a, 0x3a, 0, 0, 0, 1]);
        packet
    }

    #[test]
    fn the_datagram_elicits_version_negotiation() {
        let probe = probe();
        let datagram = probe.datagram();
        assert_eq!(datagram.len(), PROBE_LEN);
        assert_eq!(datagram[0] & 0xc0, 0xc0, "long header, fixed bit");
        let version = u32::from_be_bytes([datagram[1], datagram[2], datagram[3], datagram[4]]);
        assert_eq!(
            version & 0x0f0f_0f0f,
            0x0a0a_0a0a,
            "reserved version {version:#x}"
        );
        assert_eq!(usize::from(datagram[5]), DCID_LEN);
        assert_eq!(datagram[6] >> 5, 0b111, "QUIC-LB unroutable codepoint");
        assert_eq!(&datagram[6..6 + DCID_LEN], &probe.dcid);
        assert_eq!(usize::from(datagram[6 + DCID_LEN]), SCID_LEN);
        assert!(datagram[7 + DCID_LEN + SCID_LEN..].iter().all(|&o| o == 0));
    }

    #[test]
    fn random_probes_differ() {
        assert_ne!(VnProbe::random(), VnProbe::random());
    }

    #[test]
    fn only_its_own_answer_matches() {
        let probe = probe();
        assert!(probe.is_answered_by(&answer(&probe)));
        assert!(!VnProbe::random().is_answered_by(&answer(&probe)));
        // The probe itself, reflected, is no answer: wrong version, CIDs not swapped.
        assert!(!probe.is_answered_by(&probe.datagram()));
    }

    #[test]
    fn malformed_answers_are_refused_without_panic() {
        let probe = probe();
        let good = answer(&probe);
        // Cut anywhere but after the first of its two versions, it is no answer.
        for len in (0..good.len()).filter(|&len| len != good.len() - 4) {
            assert!(!probe.is_answered_by(&good[..len]), "truncated to {len}");
        }
        assert!(probe.is_answered_by(&good[..good.len() - 4]));
        let mut short_header = good.clone();
        short_header[0] = 0x40;
        assert!(!probe.is_answered_by(&short_header));
        let mut not_vn = good.clone();
        not_vn[4] = 1;
        assert!(!probe.is_answered_by(&not_vn));
        let mut ragged = good.clone();
        ragged.push(0);
        assert!(!probe.is_answered_by(&ragged));
        let mut overlong = good;
        overlong[5] = 255;
        assert!(!probe.is_answered_by(&overlong));
    }
}
