//! One HTTP/3 connection on its own endpoint (so that it can migrate): how it is opened, the
//! task that drives it and notices GOAWAY, and the request counting that drains it. The
//! public handle is [`Connection`](crate::Connection).

use std::fmt;
use std::future::poll_fn;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h3::ConnectionState as _;
use tokio::sync::watch;

use crate::connections::identity;
use crate::connections::plan::jittered;
use crate::error::ConnectError;
use crate::error::http3::Http3Error;
use crate::error::quic::{ConnectStartError, QuicError};
use crate::migration::Paths;
use crate::stats::snapshot::CloseReason;
use crate::tls::{TlsError, Trust};

/// HTTP/3's "no error" code (RFC 9114 section 8.1), for closing a connection we are done with.
pub(crate) const H3_NO_ERROR: u32 = 0x100;
/// How long a handshake may take by default.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// QUIC keep-alive, so that idle pooled connections (and NAT bindings) stay up.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// The sending half of an h3 client connection.
pub(crate) type SendRequest = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;
type Driver = h3::client::Connection<h3_quinn::Connection, Bytes>;

/// Told when the driver sees GOAWAY or the connection closes: the pool's hook.
pub(crate) type Listener = Arc<dyn Fn(u64, Event) + Send + Sync>;

/// What the driver task reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// The server sent GOAWAY: the connection takes no new requests.
    GoAway,
    /// The connection is closed.
    Closed,
    /// The connection learnt which server it reached.
    Identified,
}

/// How connections are opened: TLS and transport, server name, handshake timeout.
#[derive(Clone)]
pub(crate) struct ConnectSettings {
    pub(crate) client_config: quinn::ClientConfig,
    pub(crate) server_name: Arc<str>,
    pub(crate) connect_timeout: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    /// Whether connections that resume a session send 0-RTT early data.
    pub(crate) zero_rtt: bool,
}

impl fmt::Debug for ConnectSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectSettings")
            .field("server_name", &self.server_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_lifetime", &self.max_lifetime)
            .field("zero_rtt", &self.zero_rtt)
            .finish_non_exhaustive()
    }
}

impl ConnectSettings {
    /// Settings trusting `trust`, with keep-alive on; connections share one session store,
    /// and send 0-RTT early data when they resume if `zero_rtt`.
    pub(crate) fn new(trust: &Trust, server_name: &str, zero_rtt: bool) -> Result<Self, TlsError> {
        let mut client_config = trust.resuming_client_config(zero_rtt)?;
        let mut transport = quinn::TransportConfig::default();
        transport.keep_alive_interval(Some(KEEP_ALIVE));
        client_config.transport_config(Arc::new(transport));
        Ok(Self {
            client_config,
            server_name: server_name.into(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_lifetime: None,
            zero_rtt,
        })
    }
}

/// Connection ids, unique in the process (metrics and logs tell connections apart by them).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

pub(crate) fn next_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The state of one open connection, shared by the pool, the requests on it, its driver task
/// and the [`Connection`](crate::Connection) handles given out.
pub(crate) struct ConnShared {
    pub(crate) id: u64,
    quic: quinn::Connection,
    send: SendRequest,
    paths: Paths,
    server_name: Arc<str>,
    /// When its max lifetime is up; None: never.
    pub(crate) expires_at: Option<Instant>,
    in_flight: AtomicUsize,
    draining: AtomicBool,
    /// Why it drains, once it does.
    reason: OnceLock<CloseReason>,
    /// Set once the server is known to be going away (GOAWAY, or a request it rejected).
    going_away: AtomicBool,
    /// Where GOAWAY is reported (the pool, which replaces the connection).
    listener: Listener,
    /// The server it reached, once a response named it.
    server_id: OnceLock<Box<str>>,
    /// The fate of its 0-RTT early data.
    early: watch::Receiver<Early>,
}

/// Whether a connection sent 0-RTT early data, and what became of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Early {
    /// No session to resume (or 0-RTT off): a full handshake, nothing sent early.
    None,
    /// Resuming: requests sent now go as early data; the handshake is still running.
    Pending,
    /// The server accepted the early data.
    Accepted,
    /// The server refused it (or the handshake failed): early requests must be sent again.
    Rejected,
}

impl ConnShared {
    /// Opens connection `id` to `addr` on an endpoint of its own, within the connect timeout,
    /// and starts its driver task, which reports to `listener`.
    pub(crate) async fn open(
        id: u64,
        addr: SocketAddr,
        settings: &ConnectSettings,
        listener: Listener,
    ) -> Result<Arc<Self>, ConnectError> {
        let timeout = settings.connect_timeout;
        tokio::time::timeout(timeout, Self::handshake(id, addr, settings, listener))
            .await
            .map_err(|_| ConnectError::Timeout(timeout))?
    }

    async fn handshake(
        id: u64,
        addr: SocketAddr,
        settings: &ConnectSettings,
        listener: Listener,
    ) -> Result<Arc<Self>, ConnectError> {
        let local = match addr {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let (endpoint, paths) = Paths::bind(local)?;
        let connecting = endpoint
            .connect_with(settings.client_config.clone(), addr, &settings.server_name)
            .map_err(|err| ConnectError::Start(ConnectStartError::new(err)))?;
        let quic_error = |err| ConnectError::Quic(QuicError::new(err));
        let (quic, early) = match settings.zero_rtt {
            false => (
                connecting.await.map_err(quic_error)?,
                watch::channel(Early::None).1,
            ),
            // With a session ticket the connection is usable at once, in 0-RTT.
            true => match connecting.into_0rtt() {
                Ok((quic, accepted)) => {
                    let (tell, early) = watch::channel(Early::Pending);
                    tokio::spawn(async move {
                        let fate = match accepted.await {
                            true => Early::Accepted,
                            false => Early::Rejected,
                        };
                        tell.send_replace(fate);
                    });
                    (quic, early)
                }
                Err(connecting) => (
                    connecting.await.map_err(quic_error)?,
                    watch::channel(Early::None).1,
                ),
            },
        };
        paths.attach(&quic);
        let (driver, send) = h3::client::builder()
            .build::<_, _, Bytes>(h3_quinn::Connection::new(quic.clone()))
            .await
            .map_err(|err| ConnectError::Http3(Http3Error::connection(err)))?;
        let expires_at = settings
            .max_lifetime
            .map(|lifetime| Instant::now() + jittered(lifetime, rand::random()));
        let shared = Arc::new(Self {
            id,
            quic,
            send,
            paths,
            server_name: settings.server_name.clone(),
            expires_at,
            in_flight: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            reason: OnceLock::new(),
            going_away: AtomicBool::new(false),
            listener: listener.clone(),
            early,
            server_id: OnceLock::new(),
        });
        tokio::spawn(drive(driver, Arc::downgrade(&shared), listener));
        Ok(shared)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Counts a request in, unless the connection drains. Counting first and checking
    /// second (sequentially consistent, against `start_draining`'s store then load) means a
    /// drain either sees this request or this request sees the drain: a connection is never
    /// closed under a request that joined it.
    pub(crate) fn try_acquire(&self) -> bool {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.is_draining() {
            self.release();
            return false;
        }
        true
    }

    /// Counts a request out; the last one out of a draining connection closes it.
    pub(crate) fn release(&self) {
        if self.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 && self.is_draining() {
            self.close();
        }
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Takes no new requests from now on; closes when the last request in flight ends.
    /// The first reason given sticks.
    pub(crate) fn start_draining(&self, reason: CloseReason) {
        let _ = self.reason.set(reason);
        self.draining.store(true, Ordering::SeqCst);
        if self.in_flight() == 0 {
            self.close();
        }
    }

    /// The server is going away: GOAWAY arrived, or it rejected a request
    /// (H3_REQUEST_REJECTED), which qlb-server and others do once their final GOAWAY is out,
    /// possibly before h3 has read it. The connection takes no new requests and the pool
    /// replaces it, so that a retry does not meet the same refusal. Once only.
    pub(crate) fn going_away(&self) {
        if !self.going_away.swap(true, Ordering::SeqCst) {
            self.start_draining(CloseReason::GoAway);
            (self.listener)(self.id, Event::GoAway);
        }
    }

    /// The server it reached, if a response named it.
    pub(crate) fn server_id(&self) -> Option<&str> {
        self.server_id.get().map(|id| &**id)
    }

    /// Takes the server ID a response's `headers` carry; the first one sticks (the peer of
    /// a connection does not change) and is reported to the pool.
    pub(crate) fn identify(&self, headers: &http::HeaderMap) {
        if self.server_id.get().is_none() {
            if let Some(id) = identity::server_id(headers) {
                self.learnt(id);
            }
        }
    }

    /// Asks the server who it is (`HEAD /`), within the connect timeout `within`.
    pub(crate) async fn probe_identity(&self, within: Duration) {
        let authority = if self.server_name.contains(':') {
            format!("[{}]", self.server_name)
        } else {
            self.server_name.to_string()
        };
        let probe = identity::probe(self.sender(), &authority);
        if let Ok(Some(id)) = tokio::time::timeout(within, probe).await {
            self.learnt(id);
        }
    }

    fn learnt(&self, id: Box<str>) {
        if self.server_id.set(id).is_ok() {
            (self.listener)(self.id, Event::Identified);
        }
    }

    /// Why it drained; `Lost` if it closed without draining.
    pub(crate) fn close_reason(&self) -> CloseReason {
        self.reason.get().copied().unwrap_or(CloseReason::Lost)
    }

    fn close(&self) {
        self.quic.close(H3_NO_ERROR.into(), b"");
    }

    /// What became of its early data so far.
    pub(crate) fn early(&self) -> Early {
        *self.early.borrow()
    }

    /// Waits until the handshake is over (at once if it was not resuming); returns what
    /// became of the early data.
    pub(crate) async fn handshake_done(&self) -> Early {
        let mut early = self.early.clone();
        // The sender is dropped only after it sent the outcome.
        let _ = early.wait_for(|early| *early != Early::Pending).await;
        *early.borrow()
    }

    pub(crate) fn sender(&self) -> SendRequest {
        self.send.clone()
    }

    pub(crate) fn server_name(&self) -> &str {
        &self.server_name
    }

    pub(crate) fn remote_addr(&self) -> SocketAddr {
        self.quic.remote_address()
    }

    pub(crate) fn quic(&self) -> &quinn::Connection {
        &self.quic
    }

    pub(crate) fn paths(&self) -> &Paths {
        &self.paths
    }
}

impl Drop for ConnShared {
    fn drop(&mut self) {
        self.close();
    }
}

/// Drives the h3 connection until it closes. h3 reports no GOAWAY event (DESIGN.md section
/// 2): after each poll, `is_closing()` says whether one arrived.
async fn drive(mut driver: Driver, conn: Weak<ConnShared>, listener: Listener) {
    let Some(id) = conn.upgrade().map(|conn| conn.id) else {
        return;
    };
    let mut goaway = false;
    let error = poll_fn(|cx| match driver.poll_close(cx) {
        Poll::Ready(error) => Poll::Ready(error),
        Poll::Pending => {
            if !goaway && driver.is_closing() {
                goaway = true;
                if let Some(conn) = conn.upgrade() {
                    conn.going_away();
                }
            }
            Poll::Pending
        }
    })
    .await;
    tracing::debug!(connection = id, %error, "connection closed");
    listener(id, Event::Closed);
}
