//! Replacing the token of a client Initial (RFC 9001 section 5: Initial protection uses keys
//! anyone can derive from the packet's DCID). A load balancer that proxies needs it: the
//! backend sees the proxy's upstream address, not the client's, so the token the client
//! returns (minted for the client's address) is exchanged for one minted for the address the
//! backend sees.

use ring::{aead, hkdf};
use thiserror::Error;

use crate::{
    initial::{Initial, InitialError},
    varint,
    version::Version,
};

/// Octets of the header-protection sample (RFC 9001 section 5.4.2).
const SAMPLE_LEN: usize = 16;
/// The packet number is assumed 4 octets long when sampling.
const MAX_PN_LEN: usize = 4;
/// AES-128-GCM tag octets.
const TAG_LEN: usize = 16;

/// Why an Initial could not be resealed.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Error)]
pub enum ResealError {
    /// Not an Initial.
    #[error(transparent)]
    Initial(#[from] InitialError),
    /// The Length field runs past the datagram, or leaves no room for a sample and a tag.
    #[error("bad Initial length")]
    BadLength,
    /// The payload does not open under the client Initial keys of its DCID.
    #[error("Initial does not decrypt")]
    Undecryptable,
}

/// The client Initial packet keys of a DCID (RFC 9001 section 5.2, RFC 9369 section 3.3).
struct ClientInitialKeys {
    key: aead::LessSafeKey,
    iv: [u8; 12],
    hp: aead::quic::HeaderProtectionKey,
}

/// The raw client Initial key, IV and header-protection key of a DCID.
fn client_initial_secrets(version: Version, dcid: &[u8]) -> ([u8; 16], [u8; 12], [u8; 16]) {
    let (salt, key_label, iv_label, hp_label): (&[u8], &[u8], &[u8], &[u8]) = match version {
        Version::V1 => (
            &[
                0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8,
                0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a,
            ],
            b"quic key",
            b"quic iv",
            b"quic hp",
        ),
        Version::V2 => (
            &[
                0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26,
                0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9,
            ],
            b"quicv2 key",
            b"quicv2 iv",
            b"quicv2 hp",
        ),
    };
    let initial = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(dcid);
    let client: [u8; 32] = expand_label(&initial, b"client in");
    let client = hkdf::Prk::new_less_safe(hkdf::HKDF_SHA256, &client);
    (
        expand_label(&client, key_label),
        expand_label(&client, iv_label),
        expand_label(&client, hp_label),
    )
}

impl ClientInitialKeys {
    fn new(version: Version, dcid: &[u8]) -> Self {
        let (key, iv, hp) = client_initial_secrets(version, dcid);
        Self {
            key: aead::LessSafeKey::new(
                aead::UnboundKey::new(&aead::AES_128_GCM, &key)
                    .expect("a 16-octet key is valid for AES-128-GCM"),
            ),
            iv,
            hp: aead::quic::HeaderProtectionKey::new(&aead::quic::AES_128, &hp)
                .expect("a 16-octet key is valid for AES-128 header protection"),
        }
    }

    fn nonce(&self, packet_number: u64) -> aead::Nonce {
        let mut nonce = self.iv;
        for (n, p) in nonce[4..].iter_mut().zip(packet_number.to_be_bytes()) {
            *n ^= p;
        }
        aead::Nonce::assume_unique_for_key(nonce)
    }

    fn mask(&self, sample: &[u8]) -> [u8; 5] {
        self.hp
            .new_mask(sample)
            .expect("a 16-octet sample is valid for AES header protection")
    }
}

/// HKDF-Expand-Label of TLS 1.3 (RFC 8446 section 7.1) with an empty context.
fn expand_label<const N: usize>(prk: &hkdf::Prk, label: &[u8]) -> [u8; N] {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }
    let length = (N as u16).to_be_bytes();
    let label_len = [(b"tls13 ".len() + label.len()) as u8];
    let info: [&[u8]; 5] = [&length, &label_len, b"tls13 ", label, &[0]];
    let mut out = [0u8; N];
    prk.expand(&info, Len(N))
        .and_then(|okm| okm.fill(&mut out))
        .expect("QUIC's labels and lengths are valid for HKDF-SHA256");
    out
}

/// `datagram` with the token of its first packet, a client Initial, replaced by `token`;
/// packets coalesced after it are kept as they are.
pub fn replace_token(datagram: &[u8], token: &[u8]) -> Result<Vec<u8>, ResealError> {
    let initial = Initial::parse(datagram)?;
    let (token_len_at, token_end) = initial.token_span;
    let keys = ClientInitialKeys::new(initial.version, initial.dcid);
    let rest = datagram.get(token_end..).ok_or(ResealError::BadLength)?;
    let (length, length_octets) = varint::decode(rest).ok_or(ResealError::BadLength)?;
    let pn_at = token_end + length_octets;
    let end = usize::try_from(length)
        .ok()
        .and_then(|length| pn_at.checked_add(length))
        .filter(|&end| end <= datagram.len() && end >= pn_at + MAX_PN_LEN + SAMPLE_LEN)
        .ok_or(ResealError::BadLength)?;

    let sample_at = pn_at + MAX_PN_LEN;
    let mask = keys.mask(&datagram[sample_at..sample_at + SAMPLE_LEN]);
    let first = datagram[0] ^ (mask[0] & 0x0f);
    let pn_len = usize::from(first & 0x03) + 1;
    let mut pn = [0u8; MAX_PN_LEN];
    for (i, octet) in pn[..pn_len].iter_mut().enumerate() {
        *octet = datagram[pn_at + i] ^ mask[1 + i];
    }
    // A client's Initials after a Retry are among its first packets: the truncated packet
    // number is the full one (RFC 9000 Appendix A.3 with nothing acknowledged yet).
    let packet_number = pn[..pn_len]
        .iter()
        .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let payload_at = pn_at + pn_len;
    if end < payload_at + TAG_LEN {
        return Err(ResealError::BadLength);
    }

    let mut old_header = Vec::with_capacity(payload_at);
    old_header.push(first);
    old_header.extend_from_slice(&datagram[1..pn_at]);
    old_header.extend_from_slice(&pn[..pn_len]);
    let mut payload = datagram[payload_at..end].to_vec();
    let plain_len = keys
        .key
        .open_in_place(
            keys.nonce(packet_number),
            aead::Aad::from(&old_header),
            &mut payload,
        )
        .map_err(|_| ResealError::Undecryptable)?
        .len();
    payload.truncate(plain_len);

    let mut out = Vec::with_capacity(datagram.len() + token.len());
    out.push(first);
    out.extend_from_slice(&datagram[1..token_len_at]);
    varint::encode(&mut out, token.len() as u64, 1);
    out.extend_from_slice(token);
    // The Length covers the packet number and the payload, neither of which changes.
    varint::encode(&mut out, length, length_octets);
    let new_pn_at = out.len();
    out.extend_from_slice(&pn[..pn_len]);
    keys.key
        .seal_in_place_append_tag(
            keys.nonce(packet_number),
            aead::Aad::from(&out[..]),
            &mut payload,
        )
        .map_err(|_| ResealError::Undecryptable)?;
    out.extend_from_slice(&payload);
    let sample_at = new_pn_at + MAX_PN_LEN;
    let mask = keys.mask(&out[sample_at..sample_at + SAMPLE_LEN]);
    out[0] ^= mask[0] & 0x0f;
    for i in 0..pn_len {
        out[new_pn_at + i] ^= mask[1 + i];
    }
    out.extend_from_slice(&datagram[end..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9001 Appendix A.1 and RFC 9369 Appendix A.1: the client Initial keys of DCID
    /// 8394c8f03e515708.
    #[test]
    fn rfc_client_initial_keys() {
        let dcid = hex::decode("8394c8f03e515708").expect("hex");
        for (version, key, iv, hp) in [
            (
                Version::V1,
                "1f369613dd76d5467730efcbe3b1a22d",
                "fa044b2f42a3fd3b46fb255c",
                "9f50449e04a0e810283a1e9933adedd2",
            ),
            (
                Version::V2,
                "8b1a0bc121284290a29e0971b5cd045d",
                "91f73e2351d8fa91660e909f",
                "45b95e15235d6f45a6b19cbcb0294ba9",
            ),
        ] {
            let (k, i, h) = client_initial_secrets(version, &dcid);
            assert_eq!(
                (hex::encode(k), hex::encode(i), hex::encode(h)),
                (key.to_owned(), iv.to_owned(), hp.to_owned()),
                "{version:?}"
            );
        }
    }

    /// An Initial protected here and resealed with a new token decrypts to the same payload.
    #[test]
    fn a_resealed_initial_opens_with_its_new_token() {
        for version in [Version::V1, Version::V2] {
            let datagram = protected_initial(version, b"old token");
            let resealed = replace_token(&datagram, b"a longer new token").expect("resealed");
            let initial = Initial::parse(&resealed).expect("an Initial");
            assert_eq!(initial.token, b"a longer new token");
            assert_eq!(initial.dcid, [7; 9]);
            let again = replace_token(&resealed, b"old token").expect("resealed");
            assert_eq!(again, datagram, "{version:?}");
        }
    }

    #[test]
    fn tampered_or_short_initials_are_refused() {
        let mut datagram = protected_initial(Version::V1, b"t");
        let last = datagram.len() - 1;
        datagram[last] ^= 1;
        assert_eq!(
            replace_token(&datagram, b"x"),
            Err(ResealError::Undecryptable)
        );
        assert_eq!(
            replace_token(&datagram[..40], b"x"),
            Err(ResealError::BadLength)
        );
    }

    /// A client Initial (DCID 9 x 0x07, SCID 0x01, packet number 2 in 2 octets) carrying
    /// `token` and 1,100 octets of PADDING, protected as a client would.
    fn protected_initial(version: Version, token: &[u8]) -> Vec<u8> {
        let keys = ClientInitialKeys::new(version, &[7; 9]);
        let first = 0xc0 | (version.initial_type() << 4) | 0x01;
        let mut out = vec![first];
        out.extend_from_slice(&version.wire().to_be_bytes());
        out.extend_from_slice(&[9, 7, 7, 7, 7, 7, 7, 7, 7, 7, 1, 1]);
        varint::encode(&mut out, token.len() as u64, 1);
        out.extend_from_slice(token);
        let mut payload = vec![0u8; 1_100];
        varint::encode(&mut out, (2 + payload.len() + TAG_LEN) as u64, 2);
        let pn_at = out.len();
        out.extend_from_slice(&[0, 2]);
        keys.key
            .seal_in_place_append_tag(keys.nonce(2), aead::Aad::from(&out[..]), &mut payload)
            .expect("sealed");
        out.extend_from_slice(&payload);
        let mask = keys.mask(&out[pn_at + 4..pn_at + 20]);
        out[0] ^= mask[0] & 0x0f;
        out[pn_at] ^= mask[1];
        out[pn_at + 1] ^= mask[2];
        out
    }
}
