//! The QUIC-LB block ciphers over a plaintext block of `server_id || nonce`:
//! one AES-128-ECB block when it is 16 octets (draft section 5.4.1), otherwise the
//! four-pass Feistel network with AES-128 as its round function (section 5.4.2).

use aes::Aes128;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};

const BLOCK_LEN: usize = 16;
/// `half_len` for the longest plaintext block, 19 octets.
const MAX_HALF_LEN: usize = 10;

/// An expanded AES-128 key schedule. Works on plaintext blocks of 1..=19 octets; QUIC-LB
/// itself uses 5..=19, and the encoder also permutes 4..=18-octet nonces with it.
#[derive(Clone)]
pub(crate) struct Cipher {
    aes: Aes128,
}

impl Cipher {
    pub(crate) fn new(key: &[u8; 16]) -> Self {
        Self {
            aes: Aes128::new(&GenericArray::from(*key)),
        }
    }

    /// Encrypts `block` in place.
    pub(crate) fn encrypt(&self, block: &mut [u8]) {
        match <&mut [u8; BLOCK_LEN]>::try_from(&mut *block) {
            Ok(whole) => self.aes.encrypt_block(GenericArray::from_mut_slice(whole)),
            Err(_) => Halves::split(block).encrypt(self).join(block),
        }
    }

    /// Decrypts `block` in place far enough that its first `prefix_len` octets are
    /// plaintext; the rest is left unspecified. Four-pass needs its fourth pass only when
    /// the prefix reaches past the left half (draft section 5.5.2).
    pub(crate) fn decrypt_prefix(&self, block: &mut [u8], prefix_len: usize) {
        match <&mut [u8; BLOCK_LEN]>::try_from(&mut *block) {
            Ok(whole) => self.aes.decrypt_block(GenericArray::from_mut_slice(whole)),
            Err(_) => {
                let needs_fourth_pass = prefix_len > block.len() / 2;
                Halves::split(block)
                    .decrypt(self, needs_fourth_pass)
                    .join(block);
            }
        }
    }

    /// `truncate(AES-ECB(key, expand(len, pass, half)), half_len)`, XORed into `target`.
    fn xor_round(&self, target: &mut [u8], half: &[u8], len: usize, pass: u8) {
        let mut block = [0u8; BLOCK_LEN];
        block[..half.len()].copy_from_slice(half);
        block[BLOCK_LEN - 2] = len as u8;
        block[BLOCK_LEN - 1] = pass;
        self.aes
            .encrypt_block(GenericArray::from_mut_slice(&mut block));
        target.iter_mut().zip(block).for_each(|(t, k)| *t ^= k);
    }
}

/// The two halves of the Feistel network. With an odd length they share the middle octet:
/// the left keeps its high nibble, the right its low nibble (draft section 5.4.2.3).
struct Halves {
    left: [u8; MAX_HALF_LEN],
    right: [u8; MAX_HALF_LEN],
    len: usize,
}

impl Halves {
    fn split(block: &[u8]) -> Self {
        let len = block.len();
        let half = len.div_ceil(2);
        let mut halves = Self {
            left: [0; MAX_HALF_LEN],
            right: [0; MAX_HALF_LEN],
            len,
        };
        halves.left[..half].copy_from_slice(&block[..half]);
        halves.right[..half].copy_from_slice(&block[len / 2..]);
        halves.mask_left();
        halves.mask_right();
        halves
    }

    fn half_len(&self) -> usize {
        self.len.div_ceil(2)
    }

    fn is_odd(&self) -> bool {
        self.len % 2 == 1
    }

    fn mask_left(&mut self) {
        if self.is_odd() {
            self.left[self.half_len() - 1] &= 0xf0;
        }
    }

    fn mask_right(&mut self) {
        if self.is_odd() {
            self.right[0] &= 0x0f;
        }
    }

    /// right ^= F(pass, left)
    fn right_round(&mut self, cipher: &Cipher, pass: u8) {
        let h = self.half_len();
        cipher.xor_round(&mut self.right[..h], &self.left[..h], self.len, pass);
        self.mask_right();
    }

    /// left ^= F(pass, right)
    fn left_round(&mut self, cipher: &Cipher, pass: u8) {
        let h = self.half_len();
        cipher.xor_round(&mut self.left[..h], &self.right[..h], self.len, pass);
        self.mask_left();
    }

    fn encrypt(mut self, cipher: &Cipher) -> Self {
        self.right_round(cipher, 1);
        self.left_round(cipher, 2);
        self.right_round(cipher, 3);
        self.left_round(cipher, 4);
        self
    }

    fn decrypt(mut self, cipher: &Cipher, fourth_pass: bool) -> Self {
        self.left_round(cipher, 4);
        self.right_round(cipher, 3);
        self.left_round(cipher, 2);
        if fourth_pass {
            self.right_round(cipher, 1);
        }
        self
    }

    fn join(&self, out: &mut [u8]) {
        let h = self.half_len();
        if self.is_odd() {
            out[..h - 1].copy_from_slice(&self.left[..h - 1]);
            out[h - 1] = self.left[h - 1] | self.right[0];
            out[h..].copy_from_slice(&self.right[1..h]);
        } else {
            out[..h].copy_from_slice(&self.left[..h]);
            out[h..].copy_from_slice(&self.right[..h]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).expect("hex")
    }

    #[test]
    fn split_matches_the_draft_example() {
        let halves = Halves::split(&unhex("7040b81b55ccf3"));
        assert_eq!(&halves.left[..4], unhex("7040b810").as_slice());
        assert_eq!(&halves.right[..4], unhex("0b55ccf3").as_slice());
        let mut out = [0u8; 7];
        halves.join(&mut out);
        assert_eq!(out.as_slice(), unhex("7040b81b55ccf3").as_slice());
    }

    /// Draft section 5.4.2.4, pass by pass.
    #[test]
    fn passes_match_the_draft_worked_example() {
        let key: [u8; 16] = unhex("fdf726a9893ec05c0632d3956680baf0")
            .try_into()
            .expect("16 octets");
        let cipher = Cipher::new(&key);
        let mut halves = Halves::split(&unhex("31441a9c69c275"));
        assert_eq!(&halves.left[..4], unhex("31441a90").as_slice());
        assert_eq!(&halves.right[..4], unhex("0c69c275").as_slice());
        halves.right_round(&cipher, 1);
        assert_eq!(&halves.right[..4], unhex("0e3c1ff9").as_slice());
        halves.left_round(&cipher, 2);
        assert_eq!(&halves.left[..4], unhex("d4a04850").as_slice());
        halves.right_round(&cipher, 3);
        assert_eq!(&halves.right[..4], unhex("09be054a").as_slice());
        halves.left_round(&cipher, 4);
        assert_eq!(&halves.left[..4], unhex("67947d20").as_slice());
    }

    #[test]
    fn every_length_round_trips() {
        let cipher = Cipher::new(&[0x5a; 16]);
        for len in 1..=19 {
            let original: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let mut block = original.clone();
            cipher.encrypt(&mut block);
            assert_ne!(block, original, "len {len}");
            cipher.decrypt_prefix(&mut block, len);
            assert_eq!(block, original, "len {len}");
        }
    }
}
