//! What the XDP tests share: a network namespace with routes and neighbours for the
//! backends, a pool over every CID mode, and Ethernet frames of client datagrams.

#![allow(dead_code, unreachable_pub)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use qlb_router::{Backend, BackendState, HashKey, Pool};
use qlb_testkit::TestResult;
use qlb_testkit::netns::Netns;
use quic_lb::{Config, ConfigId, Decoder, Encoder, Key, ServerId};

/// The lab's interface the program runs on, and its peer.
pub const INTERFACE: &str = "xa";
/// The load balancer's own addresses (the GUE source) on it.
pub const LB_V4: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
pub const LB_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x78, 0, 0, 0, 0, 0, 1);
/// The MAC address every backend's neighbour entry has.
pub const NEXT_HOP_MAC: [u8; 6] = [0x02, 0, 0, 0, 0x78, 0x01];

/// A namespace with one veth pair: `xa` holds the load balancer's addresses and permanent
/// neighbour entries for the backends' (`10.78.0.10` up, `fd00:78::10` up), so route lookups
/// from the program succeed without traffic.
pub struct Lab {
    pub netns: Netns,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

impl Lab {
    pub fn new(tag: &str, backends: u8) -> TestResult<Self> {
        let netns = Netns::new(tag)?;
        netns.ip(&[
            "link", "add", INTERFACE, "type", "veth", "peer", "name", "xb",
        ])?;
        netns.ip(&["addr", "add", "10.78.0.1/24", "dev", INTERFACE])?;
        netns.ip(&["addr", "add", "fd00:78::1/64", "dev", INTERFACE, "nodad"])?;
        netns.ip(&["link", "set", INTERFACE, "up"])?;
        netns.ip(&["link", "set", "xb", "up"])?;
        // The program's route lookup forwards only where the interface forwards.
        netns.sysctl("net.ipv4.conf.all.forwarding", "1")?;
        netns.sysctl("net.ipv6.conf.all.forwarding", "1")?;
        let mac = format_mac(&NEXT_HOP_MAC);
        for n in 0..backends {
            let v4 = format!("10.78.0.{}", 10 + n);
            let v6 = format!("fd00:78::{:x}", 0x10 + n);
            for (family, ip) in [("-4", &v4), ("-6", &v6)] {
                netns.ip(&[
                    family,
                    "neigh",
                    "replace",
                    ip,
                    "lladdr",
                    &mac,
                    "dev",
                    INTERFACE,
                    "nud",
                    "permanent",
                ])?;
            }
        }
        let ifindex = netns.ifindex(INTERFACE)?;
        let output = netns.ip(&["-o", "link", "show", "dev", INTERFACE])?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mac = text
            .split("link/ether ")
            .nth(1)
            .and_then(|rest| parse_mac(rest.split_whitespace().next()?))
            .ok_or_else(|| format!("no MAC address in {text:?}"))?;
        Ok(Self {
            netns,
            ifindex,
            mac,
        })
    }
}

fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|octet| format!("{octet:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let octets: Vec<u8> = text
        .split(':')
        .map(|part| u8::from_str_radix(part, 16).ok())
        .collect::<Option<_>>()?;
    octets.try_into().ok()
}

/// The backend `n`'s address in the lab, of the family of `v6`.
pub fn backend_address(n: u8, v6: bool) -> SocketAddr {
    let ip = match v6 {
        false => IpAddr::V4(Ipv4Addr::new(10, 78, 0, 10 + n)),
        true => IpAddr::V6(Ipv6Addr::new(
            0xfd00,
            0x78,
            0,
            0,
            0,
            0,
            0,
            0x10 + u16::from(n),
        )),
    };
    SocketAddr::new(ip, 4433 + u16::from(n))
}

/// One configuration per CID mode the program knows, and an absent codepoint (6):
/// plaintext, single-pass, four-pass of even and odd lengths with three and four passes,
/// and the longest four-pass.
pub fn configs() -> Vec<Config> {
    let key = |seed: u8| Some(Key::new([seed; 16].map(|o| o.wrapping_mul(0x3b))));
    let config = |id: u8, sid: usize, nonce: usize, key: Option<Key>| {
        Config::new(ConfigId::new(id).expect("codepoint"), sid, nonce, key).expect("valid config")
    };
    vec![
        config(0, 2, 6, None),
        config(1, 3, 13, key(1)),
        config(2, 3, 5, key(2)),
        config(3, 4, 5, key(3)),
        config(4, 5, 4, key(4)),
        config(5, 6, 12, key(5)),
    ]
}

/// The server ID of backend `n` under a configuration of `len`-octet IDs.
pub fn server_id(n: u8, len: usize) -> ServerId {
    let octets: Vec<u8> = (0..len)
        .map(|i| (n + 1).wrapping_mul(37).wrapping_add(i as u8 * 11))
        .collect();
    ServerId::new(&octets).expect("server id")
}

/// `backends` backends `b0`.. in the lab with a server ID under every configuration,
/// weights 1 to 3, and the states given (the rest active); the fallback hash keyed when
/// `keyed`.
pub fn pool(
    backends: u8,
    v6: bool,
    states: &[(u8, BackendState)],
    keyed: bool,
    maglev_size: usize,
) -> Pool {
    let mut decoder = Decoder::new();
    for config in configs() {
        decoder.insert(config);
    }
    let members = (0..backends).map(|n| {
        let mut backend =
            Backend::new(format!("b{n}"), backend_address(n, v6)).with_weight(1 + u32::from(n % 3));
        for config in configs() {
            backend = backend.with_server_id(config.id(), server_id(n, config.server_id_len()));
        }
        match states.iter().find(|(which, _)| *which == n) {
            Some(&(_, state)) => backend.with_state(state),
            None => backend,
        }
    });
    let pool = Pool::with_maglev_size(decoder, members, maglev_size).expect("pool");
    match keyed {
        true => pool.with_hash_key(HashKey::new(*b"qlb xdp test key")),
        false => pool,
    }
}

/// An encoder of backend `n`'s CIDs under configuration `config`.
pub fn encoder(config: &Config, n: u8) -> Encoder {
    Encoder::new(config.clone(), server_id(n, config.server_id_len())).expect("encoder")
}

/// The ones' complement sum of `octets` as big-endian words, folded.
pub fn ones_sum(octets: &[u8]) -> u32 {
    let mut sum: u32 = octets
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum
}

fn ip_octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Whether a UDP segment (header and payload, checksum in place) checks out between `from`
/// and `to`.
pub fn udp_checksum_ok(from: IpAddr, to: IpAddr, segment: &[u8]) -> bool {
    let mut pseudo = ip_octets(from);
    pseudo.extend(ip_octets(to));
    pseudo.extend([0, 17]);
    pseudo.extend((segment.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(segment);
    ones_sum(&pseudo) == 0xffff
}

/// An Ethernet frame of `payload` from `client` to `vip`, with a valid UDP checksum, `ecn`
/// in its IP header and `ip_id` as IPv4 identification.
pub fn frame(client: SocketAddr, vip: SocketAddr, ecn: u8, ip_id: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = 8 + payload.len();
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend(client.port().to_be_bytes());
    udp.extend(vip.port().to_be_bytes());
    udp.extend((udp_len as u16).to_be_bytes());
    udp.extend([0, 0]);
    udp.extend_from_slice(payload);
    let mut pseudo = ip_octets(client.ip());
    pseudo.extend(ip_octets(vip.ip()));
    pseudo.extend([0, 17]);
    pseudo.extend((udp_len as u16).to_be_bytes());
    pseudo.extend_from_slice(&udp);
    let check = match !(ones_sum(&pseudo) as u16) {
        0 => 0xffff,
        check => check,
    };
    udp[6..8].copy_from_slice(&check.to_be_bytes());

    let mut frame = vec![0x02, 0, 0, 0, 0x78, 0xaa, 0x02, 0, 0, 0, 0x78, 0xbb];
    match (client.ip(), vip.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            frame.extend([0x08, 0x00]);
            let total = (20 + udp_len) as u16;
            let mut ip = vec![0x45, 0x28 | (ecn & 3)];
            ip.extend(total.to_be_bytes());
            ip.extend(ip_id.to_be_bytes());
            ip.extend([0x40, 0, 61, 17, 0, 0]);
            ip.extend(src.octets());
            ip.extend(dst.octets());
            let check = !(ones_sum(&ip) as u16);
            ip[10..12].copy_from_slice(&check.to_be_bytes());
            frame.extend(ip);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            frame.extend([0x86, 0xdd]);
            frame.extend([0x60 | 0x0a, (ecn & 3) << 4 | 0x01, 0x23, 0x45]);
            frame.extend((udp_len as u16).to_be_bytes());
            frame.extend([17, 57]);
            frame.extend(src.octets());
            frame.extend(dst.octets());
        }
        _ => panic!("a client and a VIP of one family"),
    }
    frame.extend(udp);
    frame
}
