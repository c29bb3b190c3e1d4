//! Explicit client connection migration in quic-go's model: add a path (a new local socket),
//! probe it, switch the connection onto it, or close it.
//!
//! quinn 0.11 has no path API, hence the workaround of DESIGN.md section 2:
//!
//! * every migratable connection lives alone on its own `quinn::Endpoint`, whose socket is an
//!   [`ObservedSocket`](socket::ObservedSocket) that can count the peer's datagrams;
//! * a probe sends Version-Negotiation-eliciting datagrams from the candidate socket and waits
//!   for the answer, reading the socket itself (quinn does not own it yet);
//! * a switch rebinds the endpoint to the candidate socket (`Endpoint::rebind_abstract`, after
//!   which quinn moves to a fresh connection ID and sends a PING), and is confirmed by the
//!   peer's traffic on the new socket within `max(300 ms, 3 PTO)`; otherwise the endpoint is
//!   rebound to the previous socket.
//!
//! Not enforced: the peer's `disable_active_migration` transport parameter. quinn 0.11 keeps
//! the peer's transport parameters to itself: `quinn_proto::TransportParameters` has only
//! crate-private fields and is nameable outside quinn-proto only under `cfg(fuzzing)`, so the
//! crypto session that receives them cannot be wrapped either, and the handshake data quinn
//! exposes holds only the ALPN protocol and server name. A quinn peer that disabled migration
//! drops the packets from the new address: the switch is then not confirmed and rolls back
//! with the connection alive ([`MigrationError::SwitchNotConfirmed`]).

mod error;
mod path_probe;
mod socket;
mod timing;
mod vn;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

pub use error::MigrationError;

use crate::error::quic::QuicError;
use socket::ObservedSocket;

/// The migration state of one connection: its endpoint, its connection, and which socket
/// the connection uses. Created with the endpoint, before the connection exists.
#[derive(Clone, Debug)]
pub(crate) struct Paths {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    endpoint: quinn::Endpoint,
    runtime: Arc<dyn quinn::Runtime>,
    connection: OnceLock<quinn::Connection>,
    /// The path the connection uses now.
    current: Mutex<Arc<Slot>>,
    /// Held for a whole switch: switches of one connection happen one after the other.
    switching: tokio::sync::Mutex<()>,
}

impl Paths {
    /// Binds `local` and makes a client endpoint on it that will carry exactly one
    /// connection; returns the endpoint (to `connect` on) and its migration state.
    /// Must run inside a tokio runtime.
    pub(crate) fn bind(local: SocketAddr) -> io::Result<(quinn::Endpoint, Paths)> {
        let runtime: Arc<dyn quinn::Runtime> = Arc::new(quinn::TokioRuntime);
        let socket = std::net::UdpSocket::bind(local)?;
        let local = socket.local_addr()?;
        let socket = Arc::new(ObservedSocket::new(runtime.wrap_udp_socket(socket)?, None));
        let endpoint = quinn::Endpoint::new_with_abstract_socket(
            quinn::EndpointConfig::default(),
            None,
            socket.clone(),
            runtime.clone(),
        )?;
        let shared = Shared {
            endpoint: endpoint.clone(),
            runtime,
            connection: OnceLock::new(),
            current: Mutex::new(Arc::new(Slot::new(local, SlotState::Current(socket)))),
            switching: tokio::sync::Mutex::new(()),
        };
        Ok((
            endpoint,
            Paths {
                shared: Arc::new(shared),
            },
        ))
    }

    /// Tells the migration state which connection its endpoint carries (once connected).
    /// The endpoint carries only one: later calls are ignored.
    pub(crate) fn attach(&self, connection: &quinn::Connection) {
        let _ = self.shared.connection.set(connection.clone());
    }

    /// The local address packets leave from now.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.endpoint.local_addr()
    }

    /// A candidate path from `socket` (bound by the caller; not yet carrying traffic).
    pub(crate) fn add_path(&self, socket: std::net::UdpSocket) -> Result<Path, MigrationError> {
        let connection = self.shared.live_connection()?;
        let local = socket.local_addr()?;
        let peer = connection.remote_address();
        reachable(local, peer)?;
        let socket = ObservedSocket::new(self.shared.runtime.wrap_udp_socket(socket)?, Some(peer));
        Ok(Path {
            slot: Arc::new(Slot::new(
                local,
                SlotState::Candidate {
                    socket: Arc::new(socket),
                    probed: false,
                },
            )),
            shared: Arc::downgrade(&self.shared),
        })
    }
}

impl Shared {
    /// The connection, if it is established and open.
    fn live_connection(&self) -> Result<&quinn::Connection, MigrationError> {
        let connection = self.connection.get().ok_or(MigrationError::NotConnected)?;
        match connection.close_reason() {
            Some(reason) => Err(MigrationError::ConnectionClosed(QuicError::new(reason))),
            None => Ok(connection),
        }
    }

    /// The connection, once it is open and may move: its handshake is confirmed, which it
    /// normally is within a round trip of completing. Until then the server drops every
    /// packet from another address (RFC 9000 section 9; quinn does), so a move would strand
    /// the handshake, and with it every request sent as early data. Waits as long as a
    /// switch waits for its confirmation.
    async fn movable_connection(&self) -> Result<&quinn::Connection, MigrationError> {
        let connection = self.live_connection()?;
        let deadline = tokio::time::Instant::now() + timing::confirmation_window(connection.rtt());
        while !handshake_confirmed(connection) {
            if tokio::time::Instant::now() >= deadline {
                return Err(MigrationError::HandshakeNotConfirmed);
            }
            // quinn counts HANDSHAKE_DONE but has no event for it.
            tokio::time::sleep(timing::CONFIRMATION_POLL).await;
            self.live_connection()?;
        }
        Ok(connection)
    }

    fn current(&self) -> MutexGuard<'_, Arc<Slot>> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether the client's handshake is confirmed: HANDSHAKE_DONE arrived (RFC 9001 section
/// 4.1.2), which quinn counts but does not otherwise report.
pub(crate) fn handshake_confirmed(connection: &quinn::Connection) -> bool {
    connection.stats().frame_rx.handshake_done > 0
}

/// Whether a socket bound to `local` can send to `peer`: quinn keeps the peer's address as
/// it was at connect time, and a socket of the other address family cannot send to it.
fn reachable(local: SocketAddr, peer: SocketAddr) -> Result<(), MigrationError> {
    if local.is_ipv4() == peer.is_ipv4() {
        Ok(())
    } else {
        Err(MigrationError::AddressFamily { local, peer })
    }
}

/// One local socket of a connection, and what the connection does with it.
#[derive(Debug)]
struct Slot {
    local: SocketAddr,
    state: Mutex<SlotState>,
    /// Held by a probe or a switch: a probe reads the socket, which must not race quinn's
    /// reads or another probe's.
    busy: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
enum SlotState {
    /// Added, not used by the connection; `probed` once a probe was answered.
    Candidate {
        socket: Arc<ObservedSocket>,
        probed: bool,
    },
    /// The connection's path.
    Current(Arc<ObservedSocket>),
    /// Released: the socket closes once quinn lets go of it too.
    Closed,
}

impl Slot {
    fn new(local: SocketAddr, state: SlotState) -> Self {
        Self {
            local,
            state: Mutex::new(state),
            busy: tokio::sync::Mutex::new(()),
        }
    }

    fn state(&self) -> MutexGuard<'_, SlotState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set(&self, state: SlotState) {
        *self.state() = state;
    }

    /// The socket the connection uses, if this is its path.
    fn current_socket(&self) -> Option<Arc<ObservedSocket>> {
        match &*self.state() {
            SlotState::Current(socket) => Some(socket.clone()),
            _ => None,
        }
    }
}

/// A candidate path of one connection (a local UDP socket of its own), from
/// [`Connection::add_path`](crate::Connection::add_path): probe it, switch the connection to
/// it, or close it. Dropping a path that the connection does not use closes it.
///
/// ```
/// use qlb_client::{Connection, Trust};
/// use std::net::UdpSocket;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # // A qlb-server backend on loopback.
/// # let identity = qlb_server::Identity::self_signed(&["localhost"])?;
/// # let trust = Trust::Roots(identity.certificate_chain().to_vec());
/// # let config = quic_lb::Config::new(quic_lb::ConfigId::new(0)?, 2, 6, None)?;
/// # let server = qlb_server::Server::builder(config, "0001".parse()?)
/// #     .identity(identity)
/// #     .bind("127.0.0.1:0".parse()?)?;
/// # let routes = qlb_server::builtin_routes(server.drain_state());
/// # tokio::spawn({ let server = server.clone(); async move { server.serve(routes).await } });
/// # let server_addr = server.local_addr()?;
/// let connection = Connection::connect(server_addr, "localhost", &trust).await?;
/// let path = connection.add_path(UdpSocket::bind("127.0.0.1:0")?)?;
/// let rtt = path.probe(Duration::from_secs(1)).await?;
/// assert!(rtt < Duration::from_secs(1));
/// path.switch().await?;
/// assert_eq!(connection.local_addr()?, path.local_addr());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "a path is closed when dropped"]
pub struct Path {
    slot: Arc<Slot>,
    /// Weak: a path kept by the application must not keep a dropped connection open.
    shared: Weak<Shared>,
}

impl Path {
    /// The local address of the path's socket.
    ///
    /// ```
    /// fn describe(path: &qlb_client::Path) -> String {
    ///     format!("path from {}", path.local_addr())
    /// }
    /// ```
    pub fn local_addr(&self) -> SocketAddr {
        self.slot.local
    }

    /// Checks that the path reaches the peer and back; returns the round-trip time. Sends
    /// Version-Negotiation-eliciting datagrams (reserved version, random connection IDs,
    /// 1200 octets) from the path's socket to the peer's address, retransmitted with
    /// backoff, until one is answered or `timeout` passes. A path that fails its probe is
    /// closed. The path the connection uses already answers with the connection's RTT.
    ///
    /// ```
    /// async fn usable(path: &qlb_client::Path) -> bool {
    ///     path.probe(std::time::Duration::from_millis(500)).await.is_ok()
    /// }
    /// ```
    pub async fn probe(&self, timeout: Duration) -> Result<Duration, MigrationError> {
        let shared = self.shared()?;
        let connection = shared.live_connection()?;
        let _busy = self.slot.busy.lock().await;
        let socket = match &*self.slot.state() {
            SlotState::Closed => return Err(MigrationError::PathClosed),
            SlotState::Current(_) => return Ok(connection.rtt()),
            SlotState::Candidate { socket, .. } => socket.clone(),
        };
        let probed = path_probe::probe(
            &socket,
            connection.remote_address(),
            connection.rtt(),
            timeout,
        )
        .await;
        self.slot.set(match probed {
            Ok(_) => SlotState::Candidate {
                socket,
                probed: true,
            },
            Err(_) => SlotState::Closed,
        });
        probed
    }

    /// Moves the connection onto this path: rebinds the connection's endpoint to the path's
    /// socket and waits up to `max(300 ms, 3 PTO)` for the peer's traffic on it. Confirmed,
    /// the previous path is closed and its socket released; unconfirmed, the connection goes
    /// back to the previous path ([`MigrationError::SwitchNotConfirmed`]) and this one is
    /// closed. The path must have been probed. Switches of one connection run one at a time;
    /// a switch whose future is dropped before it completes rolls back.
    ///
    /// A connection moves only once its handshake is confirmed (RFC 9000 section 9): a
    /// switch first waits as long for that, then fails with
    /// [`MigrationError::HandshakeNotConfirmed`], the connection unmoved and the path open.
    ///
    /// The peer's `disable_active_migration` transport parameter is not enforced: quinn 0.11
    /// does not expose the peer's transport parameters. A quinn peer that disabled migration
    /// ignores the new path, and the switch rolls back.
    ///
    /// ```
    /// use qlb_client::{MigrationError, Path};
    ///
    /// async fn try_switch(path: &Path) -> Result<bool, MigrationError> {
    ///     match path.switch().await {
    ///         Ok(()) => Ok(true),
    ///         // Rolled back: the connection still works on its previous path.
    ///         Err(MigrationError::SwitchNotConfirmed(_)) => Ok(false),
    ///         Err(err) => Err(err),
    ///     }
    /// }
    /// ```
    pub async fn switch(&self) -> Result<(), MigrationError> {
        let shared = self.shared()?;
        let connection = shared.movable_connection().await?;
        let _switching = shared.switching.lock().await;
        let _busy = self.slot.busy.lock().await;
        let socket = match &*self.slot.state() {
            SlotState::Closed => return Err(MigrationError::PathClosed),
            SlotState::Current(_) => return Ok(()),
            SlotState::Candidate { probed: false, .. } => return Err(MigrationError::NotProbed),
            SlotState::Candidate { socket, .. } => socket.clone(),
        };
        let previous = shared.current().clone();
        let Some(previous_socket) = previous.current_socket() else {
            return Err(MigrationError::PathClosed);
        };
        let window = timing::confirmation_window(connection.rtt());

        let seen = socket.watch();
        if let Err(err) = shared.endpoint.rebind_abstract(socket.clone()) {
            socket.unwatch();
            self.slot.set(SlotState::Closed);
            return Err(err.into());
        }
        let pending = PendingSwitch {
            shared: &shared,
            previous,
            previous_socket,
            path: &self.slot,
            socket: socket.clone(),
            decided: false,
        };
        let confirmed = tokio::select! {
            arrived = tokio::time::timeout(window, socket.arrived_since(seen)) => arrived.is_ok(),
            _ = connection.closed() => false,
        };
        if let Some(reason) = connection.close_reason() {
            let _ = pending.roll_back();
            return Err(MigrationError::ConnectionClosed(QuicError::new(reason)));
        }
        if confirmed {
            pending.confirm();
            return Ok(());
        }
        pending.roll_back()?;
        Err(MigrationError::SwitchNotConfirmed(window))
    }

    /// Releases the path's socket, unless the connection uses it now (then the path stays
    /// until the connection moves away from it). Dropping the path does the same.
    ///
    /// ```
    /// fn give_up(path: qlb_client::Path) {
    ///     path.close();
    /// }
    /// ```
    pub fn close(self) {
        drop(self);
    }

    fn shared(&self) -> Result<Arc<Shared>, MigrationError> {
        self.shared.upgrade().ok_or_else(|| {
            MigrationError::ConnectionClosed(QuicError::new(quinn::ConnectionError::LocallyClosed))
        })
    }
}

/// A switch between the rebind and its outcome. Unless confirmed, it puts the connection back
/// on the previous socket, also when dropped: a cancelled `switch` leaves the connection
/// where it was.
#[must_use = "a pending switch rolls back when dropped"]
struct PendingSwitch<'a> {
    shared: &'a Shared,
    previous: Arc<Slot>,
    previous_socket: Arc<ObservedSocket>,
    path: &'a Arc<Slot>,
    socket: Arc<ObservedSocket>,
    decided: bool,
}

impl PendingSwitch<'_> {
    /// The connection stays on the path; the previous one is closed.
    fn confirm(mut self) {
        self.decided = true;
        self.promote();
    }

    /// The connection goes back to the previous socket; the path is closed.
    fn roll_back(mut self) -> io::Result<()> {
        self.decided = true;
        self.undo()
    }

    fn undo(&self) -> io::Result<()> {
        match self
            .shared
            .endpoint
            .rebind_abstract(self.previous_socket.clone())
        {
            Ok(()) => {
                self.socket.unwatch();
                self.path.set(SlotState::Closed);
                Ok(())
            }
            Err(err) => {
                // quinn kept the new socket: it is the connection's path after all.
                self.promote();
                Err(err)
            }
        }
    }

    fn promote(&self) {
        self.socket.unwatch();
        self.path.set(SlotState::Current(self.socket.clone()));
        self.previous.set(SlotState::Closed);
        *self.shared.current() = self.path.clone();
    }
}

impl Drop for PendingSwitch<'_> {
    fn drop(&mut self) {
        if !self.decided {
            let _ = self.undo();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn paths_wait_for_the_connection() -> Result<(), Box<dyn std::error::Error>> {
        let (_endpoint, paths) = Paths::bind("127.0.0.1:0".parse()?)?;
        assert_eq!(paths.local_addr()?.ip(), std::net::Ipv4Addr::LOCALHOST);
        let err = paths
            .add_path(std::net::UdpSocket::bind("127.0.0.1:0")?)
            .expect_err("must fail");
        assert!(matches!(err, MigrationError::NotConnected), "{err}");
        Ok(())
    }

    #[test]
    fn paths_only_reach_their_address_family() {
        let v4: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let v6: SocketAddr = "[::1]:1".parse().expect("addr");
        assert!(reachable(v4, v4).is_ok());
        assert!(reachable(v6, v6).is_ok());
        let err = reachable(v6, v4).expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "a path from [::1]:1 cannot reach the peer at 127.0.0.1:1: other address family"
        );
    }
}
