//! Direct server return: sockets bound to the VIP addresses, made when a reply first needs
//! one, from which replies go straight to the clients.
//!
//! Each socket is send-only: it is connected to its own address, so the kernel delivers it
//! nothing (a connected UDP socket only receives from its peer, and a connected member of a
//! SO_REUSEPORT group is never picked for other traffic). Datagrams for the VIP arrive
//! encapsulated on the GUE socket; a listener on the same VIP address (a load balancer on
//! the same host, as in the tests) keeps all of its traffic.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use super::io::UdpIo;

/// VIP addresses with a socket at most. Inner destinations are the sender's choice, so
/// the least recently used one makes room for a new one.
pub(crate) const MAX_VIPS: usize = 16;

/// How long a VIP whose socket could not be bound waits before the next attempt (each
/// failed attempt logs once).
const RETRY_BIND: Duration = Duration::from_secs(10);

/// Why a reply could not be sent directly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DirectError {
    /// The VIP address cannot be bound (not a local address, or taken without
    /// SO_REUSEPORT); retried after a while.
    Bind,
}

#[derive(Debug)]
enum Slot {
    Bound(Arc<UdpIo>),
    /// Binding failed at that instant.
    Failed(Instant),
}

#[derive(Debug)]
struct Entry {
    slot: Slot,
    last_used: Instant,
}

/// The direct-return sockets, one per VIP address.
#[derive(Debug)]
pub(crate) struct DirectSockets {
    entries: Mutex<HashMap<SocketAddr, Entry>>,
    /// Sockets are made from quinn's connection tasks; the runtime they register with.
    runtime: tokio::runtime::Handle,
}

impl DirectSockets {
    /// Must run inside a tokio runtime.
    pub(crate) fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The socket bound to `vip`, bound now if need be.
    pub(crate) fn get(&self, vip: SocketAddr) -> Result<Arc<UdpIo>, DirectError> {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = entries.get_mut(&vip) {
            entry.last_used = now;
            match &entry.slot {
                Slot::Bound(socket) => return Ok(socket.clone()),
                Slot::Failed(at) if now.duration_since(*at) < RETRY_BIND => {
                    return Err(DirectError::Bind);
                }
                Slot::Failed(_) => {}
            }
        } else if entries.len() >= MAX_VIPS {
            let oldest = entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(vip, _)| *vip);
            if let Some(oldest) = oldest {
                tracing::debug!(%oldest, "direct return: closing the least recently used VIP socket");
                entries.remove(&oldest);
            }
        }
        let slot = match self.bind(vip) {
            Ok(socket) => {
                tracing::info!(%vip, "direct return: replies leave from {vip}");
                Slot::Bound(Arc::new(socket))
            }
            Err(error) => {
                tracing::warn!(
                    %vip,
                    %error,
                    "direct return: cannot bind the VIP address, dropping replies from it (is \
                     the VIP on a local interface, e.g. `ip addr add VIP/32 dev lo`?); next \
                     attempt in {RETRY_BIND:?}"
                );
                Slot::Failed(now)
            }
        };
        let result = match &slot {
            Slot::Bound(socket) => Ok(socket.clone()),
            Slot::Failed(_) => Err(DirectError::Bind),
        };
        entries.insert(
            vip,
            Entry {
                slot,
                last_used: now,
            },
        );
        result
    }

    /// The sockets bound now.
    pub(crate) fn bound(&self) -> Vec<Arc<UdpIo>> {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries
            .values()
            .filter_map(|entry| match &entry.slot {
                Slot::Bound(socket) => Some(socket.clone()),
                Slot::Failed(_) => None,
            })
            .collect()
    }

    fn bind(&self, vip: SocketAddr) -> io::Result<UdpIo> {
        let socket = Socket::new(Domain::for_address(vip), Type::DGRAM, Some(Protocol::UDP))?;
        if vip.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        // Shares the address with other sockets on it that allow it (another backend
        // process, or a load balancer on the same host).
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&vip.into())?;
        socket.connect(&vip.into())?;
        let _runtime = self.runtime.enter();
        UdpIo::new(socket.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vip(host: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, host], 0))
    }

    #[tokio::test]
    async fn sockets_are_bound_once_per_vip_and_bounded() {
        let direct = DirectSockets::new();
        let first = direct.get(vip(1)).expect("127.0.0.1 is local");
        let again = direct.get(vip(1)).expect("bound");
        assert!(Arc::ptr_eq(&first, &again));
        for host in 2..=u8::try_from(MAX_VIPS + 1).expect("small") {
            direct.get(vip(host)).expect("127.0.0.0/8 is local");
        }
        // The least recently used one (127.0.0.1) made room for the seventeenth.
        assert_eq!(direct.bound().len(), MAX_VIPS);
        let entries = direct.entries.lock().expect("not poisoned");
        assert!(!entries.contains_key(&vip(1)));
    }

    #[tokio::test]
    async fn a_vip_that_cannot_be_bound_is_not_retried_at_once() {
        let direct = DirectSockets::new();
        let foreign = SocketAddr::from(([192, 0, 2, 1], 443));
        assert_eq!(direct.get(foreign).err(), Some(DirectError::Bind));
        assert_eq!(direct.get(foreign).err(), Some(DirectError::Bind));
        let entries = direct.entries.lock().expect("not poisoned");
        assert!(matches!(
            entries.get(&foreign).map(|entry| &entry.slot),
            Some(Slot::Failed(_))
        ));
    }
}
