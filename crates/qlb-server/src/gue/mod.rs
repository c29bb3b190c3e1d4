//! GUE mode: datagrams that a load balancer encapsulated (Generic UDP Encapsulation,
//! `qlb_gue`) arrive on a socket of their own and are decapsulated beneath quinn, which sees
//! the real client address and the VIP; replies go back encapsulated through the load
//! balancer or straight from the VIP ([`GueReturn`]). The plain socket keeps serving
//! clients and health checks that reach the server directly.
//!
//! The decisions are plain code tested without sockets: the way back to each client
//! ([`return_map`]), splitting received buffers ([`receive`]), which way a transmit leaves
//! ([`exit`]), encapsulating replies ([`transmit`]), who may send GUE ([`sources`]). The socket layer ([`socket`], [`io`],
//! [`direct`], [`poller`]) only moves octets.

mod direct;
mod ecn;
mod exit;
mod io;
mod poller;
mod receive;
mod return_map;
mod socket;
mod sources;
mod transmit;

pub use exit::GueReturn;
pub(crate) use receive::Dropped;
pub(crate) use socket::GueSocket;
pub(crate) use sources::GueSources;
pub use sources::{GueSource, GueSourceError};
