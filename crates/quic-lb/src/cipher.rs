//! The QUIC-LB block ciphers over a plaintext block of `server_id || nonce`:
//! one AES-128-ECB block when it is 16 octets (draft section 5.4.1), otherwise the
//! four-pass Feistel network with AES-128 as its round function (section 5.4.2).

use aes::Aes128;
use aes::cipher::generic_array::GenericArray;
use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};

const BLOCK_LEN: usize = 16;

/// An expanded AES-128 key schedule for blocks of one length, with that length's Feistel
/// constants. QUIC-LB uses plaintext blocks of 5..=19 octets; the encoder also permutes
/// 4..=18-octet nonces with it.
#[derive(Clone)]
pub(crate) struct Cipher {
    aes: Aes128,
    layout: Layout,
}

impl Cipher {
    /// A cipher for blocks of `len` octets (1..=19).
    pub(crate) fn new(key: &[u8; 16], len: usize) -> Self {
        Self {
            aes: Aes128::new(&GenericArray::from(*key)),
            layout: Layout::new(len),
        }
    }

    /// Encrypts `block` (of the cipher's length) in place.
    pub(crate) fn encrypt(&self, block: &mut [u8]) {
        match <&mut Block>::try_from(&mut *block) {
            Ok(whole) => self.aes.encrypt_block(GenericArray::from_mut_slice(whole)),
            Err(_) => self.split(block).encrypt(self).write(block),
        }
    }

    /// Decrypts `block` (of the cipher's length) far enough that the first `prefix_len`
    /// (at most 16) octets of its plaintext are known, and returns the first 16 octets; the
    /// rest of them are unspecified. Four-pass needs its fourth pass only when the prefix
    /// reaches past the left half (draft section 5.5.2).
    pub(crate) fn decrypt_prefix(&self, block: &[u8], prefix_len: usize) -> Block {
        match <Block>::try_from(block) {
            Ok(whole) => {
                let mut whole = GenericArray::from(whole);
                self.aes.decrypt_block(&mut whole);
                whole.into()
            }
            Err(_) => {
                let needs_fourth_pass = prefix_len > block.len() / 2;
                self.split(block).decrypt(self, needs_fourth_pass).head()
            }
        }
    }

    fn split(&self, block: &[u8]) -> Halves<'_> {
        debug_assert_eq!(block.len(), self.layout.len);
        Halves::split(&self.layout, block)
    }

    /// `truncate(AES-ECB(key, expand(len, pass, half)), half_len)`. A half is kept in the
    /// `expand` layout already (its octets first, zeros after), so `expand` is one OR with
    /// the constant length-and-pass block and `truncate` one AND.
    fn round(&self, half: &Block, pass: usize) -> Block {
        let mut block = GenericArray::from(or(half, &self.layout.expand_suffix[pass - 1]));
        self.aes.encrypt_block(&mut block);
        and(&block.into(), &self.layout.truncate)
    }
}

pub(crate) type Block = [u8; BLOCK_LEN];

// Written as whole-block loops so that each compiles to one SSE instruction: measured, the
// byte-granular copies of a slice-based version cost more than the AES calls themselves.
fn and(a: &Block, b: &Block) -> Block {
    let mut out = *a;
    out.iter_mut().zip(b).for_each(|(o, b)| *o &= b);
    out
}

fn or(a: &Block, b: &Block) -> Block {
    let mut out = *a;
    out.iter_mut().zip(b).for_each(|(o, b)| *o |= b);
    out
}

fn xor(a: &Block, b: &Block) -> Block {
    let mut out = *a;
    out.iter_mut().zip(b).for_each(|(o, b)| *o ^= b);
    out
}

/// The Feistel constants of one block length, computed once per configuration.
#[derive(Clone)]
struct Layout {
    len: usize,
    half_len: usize,
    /// `half_len` octets of ones: `truncate`.
    truncate: Block,
    /// `truncate` with the left half's last four bits cleared when `len` is odd.
    left_mask: Block,
    /// `truncate` with the right half's first four bits cleared when `len` is odd.
    right_mask: Block,
    /// `expand`'s last two octets, `len` and the pass number, for passes 1 to 4.
    expand_suffix: [Block; 4],
}

impl Layout {
    fn new(len: usize) -> Self {
        let half_len = len.div_ceil(2);
        let truncate: Block = std::array::from_fn(|i| if i < half_len { 0xff } else { 0 });
        let (mut left_mask, mut right_mask) = (truncate, truncate);
        if len % 2 == 1 {
            left_mask[half_len - 1] = 0xf0;
            right_mask[0] = 0x0f;
        }
        let expand_suffix = std::array::from_fn(|pass| {
            let mut suffix = [0u8; BLOCK_LEN];
            suffix[BLOCK_LEN - 2] = len as u8;
            suffix[BLOCK_LEN - 1] = pass as u8 + 1;
            suffix
        });
        Self {
            len,
            half_len,
            truncate,
            left_mask,
            right_mask,
            expand_suffix,
        }
    }
}

/// The two halves of the Feistel network, each a 16-octet block holding its `half_len`
/// octets first and zeros after. With an odd length the halves share the middle octet: the
/// left keeps its high nibble, the right its low nibble (draft section 5.4.2.3).
struct Halves<'a> {
    left: Block,
    right: Block,
    layout: &'a Layout,
}

impl<'a> Halves<'a> {
    fn split(layout: &'a Layout, block: &[u8]) -> Self {
        // One copy into a fixed buffer, so that both halves are fixed-size loads.
        let mut padded = [0u8; 2 * BLOCK_LEN];
        padded[..block.len()].copy_from_slice(block);
        let mut left = [0u8; BLOCK_LEN];
        left.copy_from_slice(&padded[..BLOCK_LEN]);
        let mut right = [0u8; BLOCK_LEN];
        right.copy_from_slice(&padded[layout.len - layout.half_len..][..BLOCK_LEN]);
        Self {
            left: and(&left, &layout.left_mask),
            right: and(&right, &layout.right_mask),
            layout,
        }
    }

    /// right ^= F(pass, left)
    fn right_round(&mut self, cipher: &Cipher, pass: usize) {
        let f = cipher.round(&self.left, pass);
        self.right = and(&xor(&self.right, &f), &self.layout.right_mask);
    }

    /// left ^= F(pass, right)
    fn left_round(&mut self, cipher: &Cipher, pass: usize) {
        let f = cipher.round(&self.right, pass);
        self.left = and(&xor(&self.left, &f), &self.layout.left_mask);
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

    /// The joined halves, padded to 32 octets: the right half starts `len - half_len`
    /// octets in, sharing the middle octet when `len` is odd (the masks keep the nibbles
    /// apart, so OR joins them). Fixed-size copies only.
    fn joined(&self) -> [u8; 2 * BLOCK_LEN] {
        let mut joined = [0u8; 2 * BLOCK_LEN];
        joined[..BLOCK_LEN].copy_from_slice(&self.left);
        let at = self.layout.len - self.layout.half_len;
        let mut right = [0u8; BLOCK_LEN];
        right.copy_from_slice(&joined[at..][..BLOCK_LEN]);
        joined[at..][..BLOCK_LEN].copy_from_slice(&or(&right, &self.right));
        joined
    }

    /// The first 16 octets of the joined halves.
    fn head(&self) -> Block {
        let mut head = [0u8; BLOCK_LEN];
        head.copy_from_slice(&self.joined()[..BLOCK_LEN]);
        head
    }

    /// Writes the joined halves to `out` (`len` octets).
    fn write(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.joined()[..self.layout.len]);
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
        let layout = Layout::new(7);
        let halves = Halves::split(&layout, &unhex("7040b81b55ccf3"));
        assert_eq!(&halves.left[..4], unhex("7040b810").as_slice());
        assert_eq!(&halves.right[..4], unhex("0b55ccf3").as_slice());
        let mut out = [0u8; 7];
        halves.write(&mut out);
        assert_eq!(out.as_slice(), unhex("7040b81b55ccf3").as_slice());
    }

    /// Draft section 5.4.2.4, pass by pass.
    #[test]
    fn passes_match_the_draft_worked_example() {
        let key: [u8; 16] = unhex("fdf726a9893ec05c0632d3956680baf0")
            .try_into()
            .expect("16 octets");
        let cipher = Cipher::new(&key, 7);
        let mut halves = cipher.split(&unhex("31441a9c69c275"));
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
        for len in 1..=19 {
            let cipher = Cipher::new(&[0x5a; 16], len);
            let original: Vec<u8> = (0..len as u8).map(|i| i.wrapping_mul(37)).collect();
            let mut block = original.clone();
            cipher.encrypt(&mut block);
            assert_ne!(block, original, "len {len}");
            let known = len.min(BLOCK_LEN);
            let head = cipher.decrypt_prefix(&block, known);
            assert_eq!(&head[..known], &original[..known], "len {len}");
            if len != BLOCK_LEN {
                // The whole inversion, past 16 octets too.
                let mut back = vec![0; len];
                cipher.split(&block).decrypt(&cipher, true).write(&mut back);
                assert_eq!(back, original, "len {len}");
            }
        }
    }
}
