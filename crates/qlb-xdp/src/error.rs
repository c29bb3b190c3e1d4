//! What can go wrong loading, attaching and feeding the program.

use thiserror::Error;

/// An error of the XDP data path, with what it was doing.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum XdpError {
    /// The kernel refused the object or its program (the verifier's reason included).
    #[error("loading the XDP program: {0}")]
    Load(String),
    /// A map of the object could not be opened or written.
    #[error("XDP map {map}: {reason}")]
    Map {
        /// The map's name in the object.
        map: &'static str,
        /// What failed.
        reason: String,
    },
    /// The program could not be attached to the interface.
    #[error("attaching the XDP program to {interface}: {reason}")]
    Attach {
        /// The interface named.
        interface: String,
        /// What failed.
        reason: String,
    },
    /// A test run (`BPF_PROG_TEST_RUN`) failed.
    #[error("running the XDP program on a test packet: {0}")]
    TestRun(String),
    /// The pool's Maglev table is larger than the map was made for at load.
    #[error("the Maglev table has {size} slots; the program was loaded for at most {capacity}")]
    MaglevTooLarge {
        /// Slots of the pool's table.
        size: usize,
        /// Slots per generation of the loaded map.
        capacity: u32,
    },
    /// More backends than a generation holds.
    #[error("{0} backends; the XDP program holds at most 65536")]
    TooManyBackends(usize),
    /// More listening addresses than the VIP map holds.
    #[error("{0} listening addresses; the XDP program holds at most 64")]
    TooManyVips(usize),
}
