//! qlb's kernel fast path: an XDP program that routes the QUIC datagrams sent to the load
//! balancer's VIPs by their QUIC-LB connection IDs and forwards them in Generic UDP
//! Encapsulation, loaded and fed from Rust.
//!
//! The program (`bpf/qlb_xdp.c`) decides as [`qlb_router::Router`] does and encapsulates as
//! `qlb-gue` does, against tables this crate writes from the same [`qlb_router::Pool`]: the
//! same QUIC-LB configurations (plaintext, single-pass and four-pass CIDs, AES in the program
//! with the key schedules expanded here), the same server IDs, the same Maglev slots and
//! fallback hash. What it cannot decide it passes up (`XDP_PASS`) to the userspace data plane
//! ([`Counter`] says why). Pools are swapped whole: the tables come in two generations, and
//! one write to the settings moves every CPU to the new one.
//!
//! The object is built from source with clang (`scripts/build-xdp.sh`) and committed, so
//! that building this crate needs no clang; a test rebuilds it and requires the same octets.
//!
//! ```no_run
//! use std::sync::Arc;
//! use qlb_router::{Backend, Pool, TableLimits};
//! use qlb_xdp::{AttachMode, XdpOptions, XdpProgram};
//!
//! let pool = Pool::new(quic_lb::Decoder::new(), [Backend::new("a", "10.0.0.2:4433".parse()?)])?;
//! let mut program = XdpProgram::load(XdpOptions {
//!     gue_source: "10.0.0.1:6080".parse()?,
//!     gue_ports: 8,
//!     table_limits: TableLimits::default(),
//!     maglev_capacity: Pool::DEFAULT_MAGLEV_SIZE as u32,
//!     initials_up: false,
//! })?;
//! program.install(&pool, &["192.0.2.1:443".parse()?])?;
//! program.attach("eth0", AttachMode::Auto)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod aes_schedule;
mod counters;
mod error;
mod layout;
mod program;
mod tables;

pub use counters::{Counter, CounterKind, XdpCounters};
pub use error::XdpError;
pub use program::{Action, AttachMode, TestOutcome, XdpOptions, XdpProgram};
