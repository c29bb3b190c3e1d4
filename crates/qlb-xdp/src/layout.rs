//! The octets of the program's map entries, exactly as `bpf/layout.h` lays them out (host
//! byte order for numbers): aya moves plain octet arrays, so every record is written here,
//! field by field, with no `unsafe` casts.

use std::net::{IpAddr, SocketAddr};

/// Generations of the swapped tables (`QLB_GENERATIONS`).
pub(crate) const GENERATIONS: u32 = 2;
/// Slots per generation in `qlb_configs`: one per codepoint (`QLB_CODEPOINTS`).
pub(crate) const CODEPOINTS: u32 = 8;
/// Backends per generation (`QLB_MAX_BACKENDS`), the pool's own limit.
pub(crate) const MAX_BACKENDS: u32 = 65_536;
/// VIPs, listening addresses (`QLB_MAX_VIPS`).
pub(crate) const MAX_VIPS: usize = 64;

pub(crate) const SETTINGS_READY: u32 = 1;
pub(crate) const SETTINGS_INITIALS_UP: u32 = 2;
pub(crate) const POOL_HASH_KEYED: u32 = 1;

pub(crate) const FAMILY_V4: u8 = 4;
pub(crate) const FAMILY_V6: u8 = 6;

pub(crate) const STATE_ACTIVE: u8 = 1;
pub(crate) const STATE_DRAINING: u8 = 2;
pub(crate) const STATE_DOWN: u8 = 3;

pub(crate) const MODE_PLAINTEXT: u8 = 0;
pub(crate) const MODE_SINGLE_PASS: u8 = 1;
pub(crate) const MODE_FOUR_PASS: u8 = 2;

/// An address as 16 octets, IPv4 as IPv4-mapped IPv6, and its family.
pub(crate) fn address(ip: IpAddr) -> ([u8; 16], u8) {
    match ip {
        IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), FAMILY_V4),
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

/// Octets written one field after another.
struct Writer<const N: usize> {
    octets: [u8; N],
    at: usize,
}

impl<const N: usize> Writer<N> {
    fn new() -> Self {
        Self {
            octets: [0; N],
            at: 0,
        }
    }

    fn put(mut self, field: &[u8]) -> Self {
        self.octets[self.at..self.at + field.len()].copy_from_slice(field);
        self.at += field.len();
        self
    }

    fn skip(mut self, octets: usize) -> Self {
        self.at += octets;
        self
    }

    fn done(self) -> [u8; N] {
        debug_assert_eq!(self.at, N, "a record's fields fill it");
        self.octets
    }
}

/// `struct qlb_settings`.
pub(crate) struct Settings {
    pub(crate) generation: u32,
    pub(crate) flags: u32,
    pub(crate) idle_timeout_ns: u64,
    pub(crate) gue_source: IpAddr,
    pub(crate) gue_first_port: u16,
    pub(crate) gue_ports: u16,
}

impl Settings {
    pub(crate) fn to_bytes(&self) -> [u8; 40] {
        let (source, family) = address(self.gue_source);
        Writer::new()
            .put(&self.generation.to_ne_bytes())
            .put(&self.flags.to_ne_bytes())
            .put(&self.idle_timeout_ns.to_ne_bytes())
            .put(&source)
            .put(&self.gue_first_port.to_ne_bytes())
            .put(&self.gue_ports.to_ne_bytes())
            .put(&[family])
            .skip(3)
            .done()
    }
}

/// `struct qlb_pool`.
pub(crate) struct PoolRecord {
    pub(crate) k0: u64,
    pub(crate) k1: u64,
    pub(crate) maglev_base: u32,
    pub(crate) maglev_size: u32,
    pub(crate) flags: u32,
}

impl PoolRecord {
    pub(crate) fn to_bytes(&self) -> [u8; 32] {
        Writer::new()
            .put(&self.k0.to_ne_bytes())
            .put(&self.k1.to_ne_bytes())
            .put(&self.maglev_base.to_ne_bytes())
            .put(&self.maglev_size.to_ne_bytes())
            .put(&self.flags.to_ne_bytes())
            .skip(4)
            .done()
    }
}

/// `struct qlb_config`; `None` writes an absent slot.
pub(crate) struct ConfigRecord {
    pub(crate) mode: u8,
    pub(crate) server_id_len: u8,
    pub(crate) nonce_len: u8,
    pub(crate) encryption: [u32; 44],
    pub(crate) decryption: [u32; 44],
}

pub(crate) fn config_bytes(config: Option<&ConfigRecord>) -> [u8; 360] {
    let Some(config) = config else {
        return [0; 360];
    };
    let plaintext_len = config.server_id_len + config.nonce_len;
    let mut writer = Writer::new().put(&[
        1,
        config.mode,
        config.server_id_len,
        config.nonce_len,
        plaintext_len,
        plaintext_len + 1,
        0,
        0,
    ]);
    for word in config.encryption.iter().chain(&config.decryption) {
        writer = writer.put(&word.to_ne_bytes());
    }
    writer.done()
}

/// `struct qlb_server_id_key`.
pub(crate) fn server_id_key(generation: u32, codepoint: u8, server_id: &[u8]) -> [u8; 20] {
    let mut padded = [0u8; 16];
    padded[..server_id.len()].copy_from_slice(server_id);
    Writer::new()
        .put(&[generation as u8, codepoint, server_id.len() as u8, 0])
        .put(&padded)
        .done()
}

/// `struct qlb_backend`; `None` writes an absent slot (state 0, `QLB_STATE_ABSENT`).
pub(crate) fn backend_bytes(backend: Option<(u8, SocketAddr, u64)>) -> [u8; 32] {
    let Some((state, address_and_port, key)) = backend else {
        return [0; 32];
    };
    let (addr, family) = address(address_and_port.ip());
    Writer::new()
        .put(&[state, family])
        .put(&address_and_port.port().to_ne_bytes())
        .skip(4)
        .put(&key.to_ne_bytes())
        .put(&addr)
        .done()
}

/// `struct qlb_backend_key`.
pub(crate) fn backend_key(key: u64, generation: u32) -> [u8; 16] {
    Writer::new()
        .put(&key.to_ne_bytes())
        .put(&generation.to_ne_bytes())
        .skip(4)
        .done()
}

/// `struct qlb_vip_key`: an unspecified address stands for every address of its family.
pub(crate) fn vip_key(vip: SocketAddr) -> [u8; 20] {
    let (addr, family) = match vip.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => ([0; 16], FAMILY_V4),
        IpAddr::V6(v6) if v6.is_unspecified() => ([0; 16], FAMILY_V6),
        ip => address(ip),
    };
    Writer::new()
        .put(&[family, 0])
        .put(&vip.port().to_ne_bytes())
        .put(&addr)
        .done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_put_fields_where_the_c_structs_have_them() {
        let settings = Settings {
            generation: 1,
            flags: SETTINGS_READY,
            idle_timeout_ns: 2,
            gue_source: "192.0.2.1".parse().expect("ip"),
            gue_first_port: 6080,
            gue_ports: 8,
        }
        .to_bytes();
        assert_eq!(settings[0..4], 1u32.to_ne_bytes());
        assert_eq!(settings[26..32], [0xff, 0xff, 192, 0, 2, 1]);
        assert_eq!(settings[32..34], 6080u16.to_ne_bytes());
        assert_eq!(settings[36], FAMILY_V4);

        let backend = backend_bytes(Some((
            STATE_DRAINING,
            "[2001:db8::1]:443".parse().expect("addr"),
            9,
        )));
        assert_eq!(backend[..2], [STATE_DRAINING, FAMILY_V6]);
        assert_eq!(backend[2..4], 443u16.to_ne_bytes());
        assert_eq!(backend[8..16], 9u64.to_ne_bytes());
        assert_eq!(backend[16..18], [0x20, 0x01]);

        let key = server_id_key(1, 2, &[0xaa, 0xbb]);
        assert_eq!(key[..6], [1, 2, 2, 0, 0xaa, 0xbb]);
        assert!(key[6..].iter().all(|&o| o == 0));

        let wildcard = vip_key("0.0.0.0:443".parse().expect("addr"));
        assert_eq!(wildcard[0], FAMILY_V4);
        assert!(wildcard[4..].iter().all(|&o| o == 0));
    }

    #[test]
    fn a_config_record_holds_its_lengths_and_both_schedules() {
        let record = ConfigRecord {
            mode: MODE_FOUR_PASS,
            server_id_len: 3,
            nonce_len: 4,
            encryption: [1; 44],
            decryption: [2; 44],
        };
        let bytes = config_bytes(Some(&record));
        assert_eq!(bytes[..8], [1, MODE_FOUR_PASS, 3, 4, 7, 8, 0, 0]);
        assert_eq!(bytes[8..12], 1u32.to_ne_bytes());
        assert_eq!(bytes[184..188], 2u32.to_ne_bytes());
        assert_eq!(config_bytes(None), [0; 360]);
    }
}
