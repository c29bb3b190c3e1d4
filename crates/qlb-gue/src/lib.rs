//! Generic UDP Encapsulation (draft-ietf-intarea-gue-09) of UDP datagrams, sans-IO.
//!
//! A load balancer in GUE mode wraps each client datagram, unchanged, in
//!
//! ```text
//! outer IP | outer UDP (LB -> backend's GUE port) | GUE | inner IP | inner UDP | datagram
//!                                                   ^^^^^^^^^^^^^^^^^^^^^^^^^^ this crate
//! ```
//!
//! The outer IP and UDP headers are the sending socket's; this crate writes and reads what
//! follows them: a 4-octet GUE header (variant 0, data message, no optional fields, protocol
//! 4 or 41), then an inner IPv4 or IPv6 header and a UDP header that carry the client's
//! address and the VIP it sent to. Linux's `fou` in `gue` mode decapsulates exactly this in the
//! kernel; [`decapsulate`] does it in userspace, and also reads variant 1 (the inner IP header
//! straight after the outer UDP header), which Katran sends.
//!
//! The inner headers are canonical, so that two encapsulators (this crate, an XDP program)
//! produce the same octets: IPv4 with no options, identification 0, don't-fragment set, TTL
//! 64; IPv6 with flow label 0 and hop limit 64; DSCP 0 and the datagram's ECN codepoint in
//! both; valid IPv4 header and UDP checksums (an IPv4 UDP checksum that sums to zero is sent
//! as `0xffff`, RFC 768).
//!
//! ```
//! use qlb_gue::{Ecn, Packet, decapsulate, encapsulate};
//!
//! let client = "192.0.2.7:50000".parse()?;
//! let vip = "198.51.100.1:443".parse()?;
//! let mut packet = Vec::new();
//! encapsulate(&mut packet, client, vip, Ecn::Ect0, b"a QUIC datagram")?;
//! assert_eq!(packet.len(), qlb_gue::overhead(client) + 15);
//!
//! let Packet { source, destination, ecn, payload } = decapsulate(&packet)?;
//! assert_eq!((source, destination, ecn, payload), (client, vip, Ecn::Ect0, &b"a QUIC datagram"[..]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod checksum;
mod decap;
mod ecn;
mod encap;
mod source_port;

pub use decap::{DecapError, Packet, decapsulate};
pub use ecn::Ecn;
pub use encap::{EncapError, encapsulate, overhead};
pub use source_port::source_port_index;

/// Octets of the GUE header this crate writes: variant 0 with no optional fields.
pub const GUE_HEADER_LEN: usize = 4;
/// Octets of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Octets of an IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Octets of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;
/// The inner IP header's TTL or hop limit.
pub const INNER_TTL: u8 = 64;
