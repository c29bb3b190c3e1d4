//! AES-128 key schedules in the form the program's T-table cipher reads them (FIPS 197
//! section 5.2, and the equivalent inverse cipher's of section 5.3.5): 44 words each, a word
//! being four key octets read big-endian.

/// Round keys of AES-128: 11 rounds of four words.
pub(crate) type Schedule = [u32; 44];

/// Multiplication in AES's GF(2^8).
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0;
    while b != 0 {
        if b & 1 != 0 {
            product ^= a;
        }
        let carry = a & 0x80 != 0;
        a <<= 1;
        if carry {
            a ^= 0x1b;
        }
        b >>= 1;
    }
    product
}

/// The S-box entry of `x`: its multiplicative inverse, then the affine map.
fn sub_byte(x: u8) -> u8 {
    let inverse = (1..=255u8).find(|&y| mul(x, y) == 1).unwrap_or(0);
    let mut s = inverse;
    for shift in 1..5 {
        s ^= inverse.rotate_left(shift);
    }
    s ^ 0x63
}

fn sub_word(word: u32) -> u32 {
    u32::from_be_bytes(word.to_be_bytes().map(sub_byte))
}

/// The encryption schedule of `key`.
pub(crate) fn encryption(key: &[u8; 16]) -> Schedule {
    let mut w = [0u32; 44];
    for (word, octets) in w.iter_mut().zip(key.chunks_exact(4)) {
        *word = u32::from_be_bytes([octets[0], octets[1], octets[2], octets[3]]);
    }
    let mut rcon = 1u8;
    for i in 4..44 {
        let mut temp = w[i - 1];
        if i % 4 == 0 {
            temp = sub_word(temp.rotate_left(8)) ^ (u32::from(rcon) << 24);
            rcon = mul(rcon, 2);
        }
        w[i] = w[i - 4] ^ temp;
    }
    w
}

/// InvMixColumns of one word.
fn inv_mix_column(word: u32) -> u32 {
    let [a, b, c, d] = word.to_be_bytes();
    u32::from_be_bytes([
        mul(a, 14) ^ mul(b, 11) ^ mul(c, 13) ^ mul(d, 9),
        mul(a, 9) ^ mul(b, 14) ^ mul(c, 11) ^ mul(d, 13),
        mul(a, 13) ^ mul(b, 9) ^ mul(c, 14) ^ mul(d, 11),
        mul(a, 11) ^ mul(b, 13) ^ mul(c, 9) ^ mul(d, 14),
    ])
}

/// The equivalent inverse cipher's schedule: the rounds reversed, InvMixColumns applied to
/// all but the first and last.
pub(crate) fn decryption(encryption: &Schedule) -> Schedule {
    let mut d = [0u32; 44];
    for round in 0..11 {
        for column in 0..4 {
            let word = encryption[4 * (10 - round) + column];
            d[4 * round + column] = match round {
                0 | 10 => word,
                _ => inv_mix_column(word),
            };
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sbox_is_fips_197s() {
        assert_eq!(
            [sub_byte(0), sub_byte(1), sub_byte(0x53), sub_byte(0xff)],
            [0x63, 0x7c, 0xed, 0x16]
        );
    }

    #[test]
    fn the_expansion_matches_fips_197_appendix_a1() {
        let key = [
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ];
        let w = encryption(&key);
        assert_eq!(w[4], 0xa0fa_fe17);
        assert_eq!(
            &w[40..],
            &[0xd014_f9a8, 0xc9ee_2589, 0xe13f_0cc8, 0xb663_0ca6]
        );
    }

    #[test]
    fn the_inverse_schedule_runs_backwards() {
        let w = encryption(&[7; 16]);
        let d = decryption(&w);
        assert_eq!(&d[..4], &w[40..]);
        assert_eq!(&d[40..], &w[..4]);
        assert_eq!(d[4], inv_mix_column(w[36]));
        // InvMixColumns undoes MixColumns: the column (1, 0, 0, 0) mixes to (2, 1, 1, 3).
        assert_eq!(inv_mix_column(0x0201_0103), 0x0100_0000);
    }
}
