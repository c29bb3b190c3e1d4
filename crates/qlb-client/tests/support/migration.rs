//! Real peers on loopback for the migration tests: a bare quinn + h3 server whose migration
//! setting the test picks, a UDP relay whose paths can be made dead, and request helpers over
//! the public [`Connection`].

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use qlb_client::{Connection, Path, Trust};
use qlb_server::Identity;
use qlb_testkit::{SelfSigned, within};

use super::Backend;
use rustls::pki_types::CertificateDer;
use tokio::task::{JoinHandle, JoinSet};

pub(crate) use qlb_testkit::TestResult;

/// The longest anything that should happen at once may take on a loaded machine.
pub(crate) const WAIT: Duration = Duration::from_secs(20);
/// A generous probe timeout for paths that work.
pub(crate) const PROBE: Duration = Duration::from_secs(5);

/// Waits until `addr` can be bound again: every holder of the socket let it go.
pub(crate) async fn released(addr: SocketAddr) -> TestResult {
    within(WAIT, &format!("{addr} to be released"), async {
        while UdpSocket::bind(addr).is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A self-signed identity for `localhost`, as qlb-server takes it, and its certificate.
pub(crate) fn identity() -> TestResult<(Identity, CertificateDer<'static>)> {
    let generated = SelfSigned::localhost()?;
    let certificate = generated.certificate().clone();
    Ok((
        Identity::new(vec![certificate.clone()], generated.private_key()),
        certificate,
    ))
}

/// A backend (server ID 0001) presenting `identity`.
fn backend_with(identity: Identity) -> TestResult<Backend> {
    Backend::start_with("b1", "0001", "127.0.0.1:0".parse()?, |builder| {
        builder.identity(identity)
    })
}

/// A connection to `addr` trusting `certificate`, for server name `localhost`.
pub(crate) async fn connect(
    addr: SocketAddr,
    certificate: &CertificateDer<'static>,
) -> TestResult<Connection> {
    let trust = Trust::Roots(vec![certificate.clone()]);
    Ok(within(
        WAIT,
        "the handshake",
        Connection::connect(addr, "localhost", &trust),
    )
    .await??)
}

/// A backend (server ID 0001) and a connection to it.
pub(crate) async fn backend_and_connection() -> TestResult<(Backend, Connection)> {
    let (identity, certificate) = identity()?;
    let backend = backend_with(identity)?;
    let connection = connect(backend.addr, &certificate).await?;
    Ok((backend, connection))
}

/// A backend, a relay in front of it, and a connection through the relay.
pub(crate) async fn relayed_connection() -> TestResult<(Backend, Relay, Connection)> {
    let (identity, certificate) = identity()?;
    let backend = backend_with(identity)?;
    let relay = Relay::start(backend.addr).await?;
    let connection = connect(relay.addr, &certificate).await?;
    Ok((backend, relay, connection))
}

/// `GET path` on `connection`: the status must be 200; returns the body.
pub(crate) async fn get(connection: &Connection, path: &str) -> TestResult<Bytes> {
    let response = connection
        .send(http::Request::get(path).body(String::new())?)
        .await?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("GET {path}: {}", response.status()).into());
    }
    Ok(response.into_body().collect().await?.to_bytes())
}

/// `POST /echo` with `message`: the status must be 200; returns the body. The liveness
/// checks use it rather than a `GET`: a server that answers before it read the end of the
/// request stops the stream (qlb-server with code 0), and `Connection::send` fails the
/// request if the stop arrives before it finished sending, although the response is whole
/// (RFC 9114 section 4.1.1). A body the server reads to its end avoids that race, which has
/// nothing to do with migration.
pub(crate) async fn echo(connection: &Connection, message: impl Into<String>) -> TestResult<Bytes> {
    let response = connection
        .send(http::Request::post("/echo").body(message.into())?)
        .await?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("POST /echo: {}", response.status()).into());
    }
    Ok(response.into_body().collect().await?.to_bytes())
}

/// The client's address as the backend saw it, from `/whoami`.
pub(crate) async fn peer_seen(connection: &Connection) -> TestResult<SocketAddr> {
    Ok(whoami(connection).await?["peer"]
        .as_str()
        .ok_or("no peer in /whoami")?
        .parse()?)
}

/// The backend's `/whoami`.
pub(crate) async fn whoami(connection: &Connection) -> TestResult<serde_json::Value> {
    Ok(serde_json::from_slice(&get(connection, "/whoami").await?)?)
}

/// A new candidate path of `connection` from a fresh loopback port.
pub(crate) fn new_path(connection: &Connection) -> TestResult<Path> {
    Ok(connection.add_path(UdpSocket::bind("127.0.0.1:0")?)?)
}

/// A new path, probed.
pub(crate) async fn probed_path(connection: &Connection) -> TestResult<Path> {
    let path = new_path(connection)?;
    path.probe(PROBE).await?;
    Ok(path)
}

/// A bare quinn + h3 server echoing every request's body, with active migration
/// allowed or not (`ServerConfig::migration(false)` sends `disable_active_migration`).
pub(crate) struct PlainServer {
    pub addr: SocketAddr,
    pub certificate: CertificateDer<'static>,
    endpoint: quinn::Endpoint,
    accepting: JoinHandle<()>,
}

impl PlainServer {
    pub(crate) fn start(migration: bool) -> TestResult<Self> {
        let identity = SelfSigned::localhost()?;
        let certificate = identity.certificate().clone();
        let mut config = identity.server_config()?;
        config.migration(migration);
        let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse()?)?;
        let accepting = tokio::spawn({
            let endpoint = endpoint.clone();
            async move {
                // Dropped with this task: the connections' tasks stop too.
                let mut connections = JoinSet::new();
                while let Some(incoming) = endpoint.accept().await {
                    connections.spawn(serve_echo(incoming));
                }
            }
        });
        Ok(Self {
            addr: endpoint.local_addr()?,
            certificate,
            endpoint,
            accepting,
        })
    }
}

impl Drop for PlainServer {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"");
        self.accepting.abort();
    }
}

async fn serve_echo(incoming: quinn::Incoming) {
    let Ok(connection) = incoming.await else {
        return;
    };
    let Ok(mut h3) = h3::server::builder()
        .build::<_, Bytes>(h3_quinn::Connection::new(connection))
        .await
    else {
        return;
    };
    let mut requests = JoinSet::new();
    while let Ok(Some(resolver)) = h3.accept().await {
        requests.spawn(async move {
            let Ok((_request, mut stream)) = resolver.resolve_request().await else {
                return;
            };
            let mut body = Vec::new();
            while let Ok(Some(mut chunk)) = stream.recv_data().await {
                body.extend_from_slice(&chunk.copy_to_bytes(chunk.remaining()));
            }
            let _ = stream.send_response(http::Response::new(())).await;
            let _ = stream.send_data(Bytes::from(body)).await;
            let _ = stream.finish().await;
        });
    }
}

/// A UDP relay between clients and one server, like the load balancer's proxy mode: each
/// client address gets an upstream socket of its own. A blocked client address's datagrams
/// are dropped both ways, which makes that client's path dead; a held one's are relayed to
/// the server, but the server's replies to it are dropped, which stalls its handshake.
pub(crate) struct Relay {
    pub addr: SocketAddr,
    filter: Arc<Mutex<Filter>>,
    relaying: JoinHandle<()>,
}

/// Which datagrams a [`Relay`] drops.
#[derive(Default)]
struct Filter {
    /// Both ways.
    blocked: HashSet<SocketAddr>,
    /// The server's replies to these.
    held: HashSet<SocketAddr>,
    /// Whether clients first seen from now on are held.
    hold_new: bool,
}

impl Relay {
    pub(crate) async fn start(server: SocketAddr) -> TestResult<Self> {
        let listen = Arc::new(tokio::net::UdpSocket::bind("127.0.0.1:0").await?);
        let addr = listen.local_addr()?;
        let filter = Arc::new(Mutex::new(Filter::default()));
        let relaying = tokio::spawn(relay(listen, server, filter.clone()));
        Ok(Self {
            addr,
            filter,
            relaying,
        })
    }

    /// Drops everything from and to `client` from now on.
    pub(crate) fn block(&self, client: SocketAddr) {
        self.filter().blocked.insert(client);
    }

    /// Drops the server's replies to every client first seen from now on.
    pub(crate) fn hold_new_clients(&self) {
        self.filter().hold_new = true;
    }

    /// Drops the server's replies to `client` only (new clients pass again).
    pub(crate) fn hold_only(&self, client: SocketAddr) {
        let mut filter = self.filter();
        filter.hold_new = false;
        filter.held = HashSet::from([client]);
    }

    /// Relays every reply again (blocked clients stay blocked).
    pub(crate) fn release(&self) {
        let mut filter = self.filter();
        filter.hold_new = false;
        filter.held.clear();
    }

    fn filter(&self) -> std::sync::MutexGuard<'_, Filter> {
        lock(&self.filter)
    }
}

fn lock(filter: &Mutex<Filter>) -> std::sync::MutexGuard<'_, Filter> {
    filter.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.relaying.abort();
    }
}

async fn relay(listen: Arc<tokio::net::UdpSocket>, server: SocketAddr, filter: Arc<Mutex<Filter>>) {
    let is_blocked = |client: &SocketAddr| lock(&filter).blocked.contains(client);
    // Dropped with this task when the relay stops: the flows stop too.
    let mut flows = JoinSet::new();
    let mut upstreams: HashMap<SocketAddr, Arc<tokio::net::UdpSocket>> = HashMap::new();
    let mut buf = vec![0; 65536];
    while let Ok((len, client)) = listen.recv_from(&mut buf).await {
        if is_blocked(&client) {
            continue;
        }
        let upstream = match upstreams.get(&client) {
            Some(upstream) => upstream.clone(),
            None => {
                {
                    let mut filter = lock(&filter);
                    if filter.hold_new {
                        filter.held.insert(client);
                    }
                }
                let Ok(upstream) = tokio::net::UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                if upstream.connect(server).await.is_err() {
                    continue;
                }
                let upstream = Arc::new(upstream);
                upstreams.insert(client, upstream.clone());
                let (back, listen, filter) = (upstream.clone(), listen.clone(), filter.clone());
                flows.spawn(async move {
                    let mut buf = vec![0; 65536];
                    while let Ok(len) = back.recv(&mut buf).await {
                        let dropped = {
                            let filter = lock(&filter);
                            filter.blocked.contains(&client) || filter.held.contains(&client)
                        };
                        if !dropped {
                            let _ = listen.send_to(&buf[..len], client).await;
                        }
                    }
                });
                upstream
            }
        };
        let _ = upstream.send(&buf[..len]).await;
    }
}
