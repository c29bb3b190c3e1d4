//! The public handle on one HTTP/3 connection: pooled (from a client) or opened alone, able
//! to send requests and to move to another local socket.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body::Body;

use crate::connections::lease::Lease;
use crate::connections::shared::{ConnShared, ConnectSettings, Listener, next_id};
use crate::error::{BoxError, ConnectError, Error};
use crate::migration::{MigrationError, Path};
use crate::requests::body::ResponseBody;
use crate::requests::request::{self, RequestHead};
use crate::tls::Trust;

/// One HTTP/3 connection: from a client's pool ([`Client::connections`](crate::Client::connections)),
/// or opened alone with [`Connection::connect`] for migration without pooling. Clones are
/// handles to the same connection; an unpooled connection closes when its last handle goes.
///
/// ```no_run
/// use qlb_client::{Connection, Trust};
///
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let connection = Connection::connect("127.0.0.1:4433".parse()?, "localhost", &Trust::Insecure).await?;
/// let response = connection.send(http::Request::get("/whoami").body(String::new())?).await?;
/// println!("{} from {}", response.status(), connection.remote_addr());
///
/// // Move it to another local socket.
/// let path = connection.add_path(std::net::UdpSocket::bind("0.0.0.0:0")?)?;
/// path.probe(std::time::Duration::from_secs(1)).await?;
/// path.switch().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Connection {
    shared: Arc<ConnShared>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.shared.id)
            .field("remote", &self.remote_addr())
            .field("in_flight", &self.in_flight())
            .field("draining", &self.is_draining())
            .finish()
    }
}

impl Connection {
    pub(crate) fn new(shared: Arc<ConnShared>) -> Self {
        Self { shared }
    }

    /// Opens a connection to `addr`, presenting `server_name` in TLS and trusting `trust`,
    /// on an endpoint of its own. Unpooled: no max lifetime, no replacement; after GOAWAY,
    /// [`send`](Connection::send) returns [`Error::GoingAway`]. Must run inside a tokio runtime.
    ///
    /// ```
    /// use qlb_client::{ConnectError, Connection, Trust};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // A server name that is not one is refused before anything is sent.
    /// let err = Connection::connect("127.0.0.1:9".parse()?, "not a name", &Trust::Insecure).await;
    /// assert!(matches!(err, Err(ConnectError::Start(_))));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn connect(
        addr: SocketAddr,
        server_name: &str,
        trust: &Trust,
    ) -> Result<Self, ConnectError> {
        let settings = ConnectSettings::new(trust, server_name, true)?;
        let listener: Listener = Arc::new(|_, _| {});
        let shared = ConnShared::open(next_id(), addr, &settings, listener).await?;
        Ok(Self::new(shared))
    }

    /// Sends `request` and returns the response once its headers arrive; the body streams
    /// in as it is read. A relative URI (`/path`) goes to the connection's server name. The
    /// request body streams out from a task while the response comes in.
    ///
    /// No timeout of its own: wrap it in `tokio::time::timeout` (or use a
    /// [`Client`](crate::Client)).
    ///
    /// ```no_run
    /// # async fn demo(connection: qlb_client::Connection) -> Result<(), Box<dyn std::error::Error>> {
    /// use http_body_util::BodyExt;
    ///
    /// let request = http::Request::post("/echo").body(String::from("hello"))?;
    /// let body = connection.send(request).await?.into_body().collect().await?.to_bytes();
    /// assert_eq!(&body[..], b"hello");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn send<B>(
        &self,
        request: http::Request<B>,
    ) -> Result<http::Response<ResponseBody>, Error>
    where
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let head = RequestHead::new(parts, self.shared.server_name())?;
        if !self.shared.try_acquire() {
            return Err(Error::GoingAway);
        }
        let lease = Lease::new(self.shared.clone(), None);
        request::send_on(lease, &head, body, None)
            .await
            .map_err(request::Failure::into_error)
    }

    /// A candidate path over `socket` (bound by the caller, e.g. on another interface):
    /// probe it, then switch the connection onto it. See [`Path`].
    ///
    /// ```no_run
    /// # async fn demo(connection: qlb_client::Connection) -> Result<(), Box<dyn std::error::Error>> {
    /// let path = connection.add_path(std::net::UdpSocket::bind("0.0.0.0:0")?)?;
    /// let rtt = path.probe(std::time::Duration::from_millis(500)).await?;
    /// path.switch().await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn add_path(&self, socket: std::net::UdpSocket) -> Result<Path, MigrationError> {
        self.shared.paths().add_path(socket)
    }

    /// Whether the handshake is confirmed (the server's HANDSHAKE_DONE arrived). Until it
    /// is, a resumed connection may already carry requests as early data, but it cannot
    /// move: a [`Path::switch`] waits for it, and fails with
    /// [`MigrationError::HandshakeNotConfirmed`] if it does not come.
    ///
    /// ```no_run
    /// # fn demo(connection: qlb_client::Connection) {
    /// if connection.is_handshake_confirmed() { println!("free to move"); }
    /// # }
    /// ```
    pub fn is_handshake_confirmed(&self) -> bool {
        crate::migration::handshake_confirmed(self.shared.quic())
    }

    /// The server's address.
    ///
    /// ```no_run
    /// # fn demo(connection: qlb_client::Connection) {
    /// println!("connected to {}", connection.remote_addr());
    /// # }
    /// ```
    pub fn remote_addr(&self) -> SocketAddr {
        self.shared.remote_addr()
    }

    /// The local address packets leave from now (it changes with a path switch).
    ///
    /// ```no_run
    /// # fn demo(connection: qlb_client::Connection) -> std::io::Result<()> {
    /// println!("from {}", connection.local_addr()?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.shared.paths().local_addr()
    }

    /// A number that tells this connection apart from the others of the process.
    ///
    /// ```no_run
    /// # fn demo(a: qlb_client::Connection, b: qlb_client::Connection) {
    /// assert_ne!(a.id(), b.id());
    /// # }
    /// ```
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// Requests in flight on it.
    ///
    /// ```no_run
    /// # fn demo(connection: qlb_client::Connection) {
    /// println!("{} requests in flight", connection.in_flight());
    /// # }
    /// ```
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Whether it takes no new requests: GOAWAY, or its pool retired it (max lifetime, idle,
    /// backend removed). Requests in flight still finish.
    ///
    /// ```no_run
    /// # fn demo(connection: qlb_client::Connection) {
    /// if connection.is_draining() { println!("going away"); }
    /// # }
    /// ```
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    /// Whether it is closed.
    ///
    /// ```no_run
    /// # fn demo(connection: qlb_client::Connection) {
    /// assert!(!connection.is_closed());
    /// # }
    /// ```
    pub fn is_closed(&self) -> bool {
        self.shared.quic().close_reason().is_some()
    }

    /// The current round-trip time estimate.
    ///
    /// ```no_run
    /// # fn demo(connection: qlb_client::Connection) {
    /// println!("rtt {:?}", connection.rtt());
    /// # }
    /// ```
    pub fn rtt(&self) -> Duration {
        self.shared.quic().rtt()
    }

    /// Waits until the connection is closed, by either side.
    ///
    /// ```no_run
    /// # async fn demo(connection: qlb_client::Connection) {
    /// connection.closed().await;
    /// # }
    /// ```
    pub async fn closed(&self) {
        self.shared.quic().closed().await;
    }
}
