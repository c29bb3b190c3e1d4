//! The QUIC versions whose Initial and Retry packets are understood, and what differs between
//! them: long-header type codes and the Retry integrity key and nonce.

use ring::aead;

/// A QUIC version with a known Retry packet.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Version {
    /// QUIC version 1 (RFC 9000).
    V1,
    /// QUIC version 2 (RFC 9369).
    V2,
}

impl Version {
    /// The version of a version field, if known.
    pub fn from_wire(version: u32) -> Option<Self> {
        match version {
            0x0000_0001 => Some(Self::V1),
            0x6b33_43cf => Some(Self::V2),
            _ => None,
        }
    }

    /// The version field on the wire.
    pub fn wire(self) -> u32 {
        match self {
            Self::V1 => 0x0000_0001,
            Self::V2 => 0x6b33_43cf,
        }
    }

    /// The long-header type bits of an Initial (RFC 9000 section 17.2, RFC 9369 section 3.2).
    pub(crate) fn initial_type(self) -> u8 {
        match self {
            Self::V1 => 0b00,
            Self::V2 => 0b01,
        }
    }

    /// The long-header type bits of a Retry.
    pub(crate) fn retry_type(self) -> u8 {
        match self {
            Self::V1 => 0b11,
            Self::V2 => 0b00,
        }
    }

    /// The fixed AES-128-GCM key and nonce of the Retry integrity tag (RFC 9001 section 5.8,
    /// RFC 9369 section 3.3.3).
    fn integrity_key_nonce(self) -> ([u8; 16], [u8; 12]) {
        match self {
            Self::V1 => (
                [
                    0xbe, 0x0c, 0x69, 0x0b, 0x9f, 0x66, 0x57, 0x5a, 0x1d, 0x76, 0x6b, 0x54, 0xe3,
                    0x68, 0xc8, 0x4e,
                ],
                [
                    0x46, 0x15, 0x99, 0xd3, 0x5d, 0x63, 0x2b, 0xf2, 0x23, 0x98, 0x25, 0xbb,
                ],
            ),
            Self::V2 => (
                [
                    0x8f, 0xb4, 0xb0, 0x1b, 0x56, 0xac, 0x48, 0xe2, 0x60, 0xfb, 0xcb, 0xce, 0xad,
                    0x7c, 0xcc, 0x92,
                ],
                [
                    0xd8, 0x69, 0x69, 0xbc, 0x2d, 0x7c, 0x6d, 0x99, 0x90, 0xef, 0xb0, 0x4a,
                ],
            ),
        }
    }

    /// The 16-octet integrity tag over a Retry pseudo-packet (the ODCID, length-prefixed,
    /// then the Retry packet without its tag).
    pub(crate) fn retry_tag(self, pseudo_packet: &[u8]) -> [u8; 16] {
        let (key, nonce) = self.integrity_key_nonce();
        let key = aead::LessSafeKey::new(
            aead::UnboundKey::new(&aead::AES_128_GCM, &key)
                .expect("a 16-octet key is valid for AES-128-GCM"),
        );
        let tag = key
            .seal_in_place_separate_tag(
                aead::Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(pseudo_packet),
                &mut [],
            )
            .expect("an empty plaintext is within AES-GCM's limits");
        let mut out = [0u8; 16];
        out.copy_from_slice(tag.as_ref());
        out
    }
}
