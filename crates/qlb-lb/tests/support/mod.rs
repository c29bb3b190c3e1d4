//! Real UDP peers on loopback for the data plane tests: backends that record what they
//! receive and echo it, and clients that send QUIC-shaped datagrams. Both use quinn-udp, so
//! that tests see ECN codepoints, GRO batches and destination addresses. Each test binary
//! uses a subset.
#![allow(dead_code)]

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
use qlb_router::{Backend as PoolBackend, BackendState, Pool};
use qlb_testkit::{eventually_blocking, fixtures};
use quic_lb::{Config, ConnectionId, Decoder, Encoder, ServerId};
use quinn_udp::{EcnCodepoint, RecvMeta, Transmit, UdpSocketState};

/// The longest any test waits for something that should happen at once.
pub(crate) const WAIT: Duration = Duration::from_secs(10);
/// How long one receive call blocks.
const RECV_TIMEOUT: Duration = Duration::from_millis(20);

/// One datagram as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Datagram {
    /// The sender.
    pub from: SocketAddr,
    pub data: Vec<u8>,
    pub ecn: Option<EcnCodepoint>,
}

/// A UDP socket driven through quinn-udp, blocking with a short receive timeout.
pub(crate) struct Peer {
    socket: UdpSocket,
    state: UdpSocketState,
}

impl Peer {
    pub(crate) fn bind(address: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::bind(address)?;
        let state = UdpSocketState::new((&socket).into())?;
        socket.set_nonblocking(false)?;
        socket.set_read_timeout(Some(RECV_TIMEOUT))?;
        Ok(Self { socket, state })
    }

    /// A client on 127.0.0.1.
    pub(crate) fn client() -> Self {
        Self::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a client")
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("bound")
    }

    /// The most datagrams one GSO send may carry (1: no GSO).
    pub(crate) fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    pub(crate) fn send(&self, to: SocketAddr, data: &[u8]) {
        self.send_batch(to, data, None, None);
    }

    /// Sends `contents` to `to` with `ecn`; with `segment_size`, as a GSO batch.
    pub(crate) fn send_batch(
        &self,
        to: SocketAddr,
        contents: &[u8],
        ecn: Option<EcnCodepoint>,
        segment_size: Option<usize>,
    ) {
        let transmit = Transmit {
            destination: to,
            ecn,
            contents,
            segment_size,
            src_ip: None,
        };
        self.state
            .try_send((&self.socket).into(), &transmit)
            .expect("send");
    }

    /// The datagrams of one receive call (several for a GRO batch); none on timeout.
    pub(crate) fn recv(&self) -> Vec<Datagram> {
        let mut buffer = vec![0u8; 1 << 16];
        let mut meta = [RecvMeta::default()];
        let received = self.state.recv(
            (&self.socket).into(),
            &mut [IoSliceMut::new(&mut buffer)],
            &mut meta,
        );
        match received {
            Ok(_) => {
                let [meta] = meta;
                let stride = if meta.stride == 0 {
                    meta.len
                } else {
                    meta.stride
                };
                buffer[..meta.len]
                    .chunks(stride.max(1))
                    .map(|data| Datagram {
                        from: meta.addr,
                        data: data.to_vec(),
                        ecn: meta.ecn,
                    })
                    .collect()
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Vec::new()
            }
            Err(e) => panic!("receive: {e}"),
        }
    }

    /// Receives until `count` datagrams have come, or [`WAIT`] has passed.
    pub(crate) fn collect(&self, count: usize) -> Vec<Datagram> {
        let deadline = Instant::now() + WAIT;
        let mut received = Vec::new();
        while received.len() < count && Instant::now() < deadline {
            received.extend(self.recv());
        }
        received
    }

    /// Sends each of `datagrams` to `to` and collects as many replies.
    pub(crate) fn exchange(
        &self,
        to: SocketAddr,
        datagrams: impl IntoIterator<Item = impl AsRef<[u8]>>,
    ) -> Vec<Datagram> {
        let mut sent = 0;
        for datagram in datagrams {
            self.send(to, datagram.as_ref());
            sent += 1;
        }
        self.collect(sent)
    }
}

/// A backend: records every datagram it receives and echoes it to its sender, with the
/// next ECN codepoint (ECT(0) -> ECT(1) -> CE -> ECT(0)), so that the reply's codepoint
/// shows it was carried on the way back and not copied from the way in.
pub(crate) struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    peer: Arc<Peer>,
    received: Arc<Mutex<Vec<Datagram>>>,
    stop: Arc<AtomicBool>,
    /// Set: datagrams are recorded but not echoed.
    muted: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    pub(crate) fn start(name: &str, ip: IpAddr) -> io::Result<Self> {
        let peer = Arc::new(Peer::bind(SocketAddr::new(ip, 0))?);
        let addr = peer.addr();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let muted = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peer, received, stop, muted) = (
                Arc::clone(&peer),
                Arc::clone(&received),
                Arc::clone(&stop),
                Arc::clone(&muted),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    for datagram in peer.recv() {
                        // Recorded before the echo leaves: a client holding the reply can
                        // count on the record.
                        lock(&received).push(datagram.clone());
                        if muted.load(Ordering::Relaxed) {
                            continue;
                        }
                        peer.send_batch(
                            datagram.from,
                            &datagram.data,
                            datagram.ecn.map(next_ecn),
                            None,
                        );
                    }
                }
            })
        };
        Ok(Self {
            name: name.to_owned(),
            addr,
            peer,
            received,
            stop,
            muted,
            thread: Some(thread),
        })
    }

    /// Stops echoing (or starts again): the flows of datagrams sent meanwhile stay unconfirmed.
    pub(crate) fn mute(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    /// Sends `contents` to `to` with `ecn` from the backend's address (a GUE backend's
    /// encapsulated reply, say).
    pub(crate) fn send(&self, to: SocketAddr, contents: &[u8], ecn: Option<EcnCodepoint>) {
        self.peer.send_batch(to, contents, ecn, None);
    }

    pub(crate) fn received(&self) -> Vec<Datagram> {
        lock(&self.received).clone()
    }

    /// The payloads received, in order.
    pub(crate) fn payloads(&self) -> Vec<Vec<u8>> {
        self.received().into_iter().map(|d| d.data).collect()
    }

    /// Waits until `count` datagrams have come (or [`WAIT`] has passed) and returns them.
    pub(crate) fn wait_for(&self, count: usize) -> Vec<Datagram> {
        // Short of `count`, the caller's assertion on what came says what is missing.
        let _ = eventually_blocking(WAIT, "datagrams at a backend", || {
            lock(&self.received).len() >= count
        });
        self.received()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().ok();
        }
    }
}

pub(crate) fn next_ecn(ecn: EcnCodepoint) -> EcnCodepoint {
    match ecn {
        EcnCodepoint::Ect0 => EcnCodepoint::Ect1,
        EcnCodepoint::Ect1 => EcnCodepoint::Ce,
        EcnCodepoint::Ce => EcnCodepoint::Ect0,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Backends `b1`, `b2`, ... with server IDs 0001, 0002, ... under one four-pass QUIC-LB
/// configuration, and encoders issuing their connection IDs.
pub(crate) struct Cluster {
    pub backends: Vec<Backend>,
    config: Config,
    encoders: Mutex<Vec<Encoder>>,
}

impl Cluster {
    /// `count` backends on 127.0.0.1.
    pub(crate) fn start(count: u8) -> Self {
        Self::on(&vec![IpAddr::from([127, 0, 0, 1]); usize::from(count)]).expect("backends")
    }

    /// One backend on each of `ips`.
    pub(crate) fn on(ips: &[IpAddr]) -> io::Result<Self> {
        let config = fixtures::config(0);
        let backends = ips
            .iter()
            .zip(1u8..)
            .map(|(ip, n)| Backend::start(&format!("b{n}"), *ip))
            .collect::<io::Result<Vec<_>>>()?;
        let encoders = (1u8..)
            .take(backends.len())
            .map(|n| Encoder::new(config.clone(), server_id(n)).expect("encoder"))
            .collect();
        Ok(Self {
            backends,
            config,
            encoders: Mutex::new(encoders),
        })
    }

    /// The backend named `name`.
    pub(crate) fn backend(&self, name: &str) -> &Backend {
        self.backends
            .iter()
            .find(|b| b.name == name)
            .expect("a backend of the cluster")
    }

    /// A pool of every backend, in the state `state` gives by name.
    pub(crate) fn pool_with(&self, state: impl Fn(&str) -> BackendState) -> Arc<Pool> {
        let mut decoder = Decoder::new();
        decoder.insert(self.config.clone());
        let backends = self.backends.iter().zip(1u8..).map(|(b, n)| {
            PoolBackend::new(b.name.clone(), b.addr)
                .with_server_id(self.config.id(), server_id(n))
                .with_state(state(&b.name))
        });
        Arc::new(Pool::new(decoder, backends).expect("pool"))
    }

    /// A pool of every backend, all active.
    pub(crate) fn pool(&self) -> Arc<Pool> {
        self.pool_with(|_| BackendState::Active)
    }

    /// A fresh connection ID of backend `name` (`b1`, `b2`, ...).
    pub(crate) fn cid(&self, name: &str) -> ConnectionId {
        let index = self
            .backends
            .iter()
            .position(|b| b.name == name)
            .expect("a backend of the cluster");
        lock(&self.encoders)[index].generate()
    }
}

fn server_id(n: u8) -> ServerId {
    ServerId::new(&[0, n]).expect("server id")
}

/// `backends` backends, all active, behind a data plane of `workers` workers listening on one
/// loopback address (the third value).
pub(crate) fn fixture(
    backends: u8,
    workers: usize,
    options: DataplaneOptions,
) -> (Cluster, Dataplane, SocketAddr) {
    let cluster = Cluster::start(backends);
    let lb = start(&["127.0.0.1:0"], workers, cluster.pool(), options);
    let listen = lb.local_addrs()[0];
    (cluster, lb, listen)
}

/// Starts a data plane on `listen` with `workers` workers.
pub(crate) fn start(
    listen: &[&str],
    workers: usize,
    pool: Arc<Pool>,
    options: DataplaneOptions,
) -> Dataplane {
    let listen: Vec<SocketAddr> = listen.iter().map(|a| a.parse().expect("address")).collect();
    Dataplane::start(
        &listen,
        NonZeroUsize::new(workers).expect("workers"),
        pool,
        options,
    )
    .expect("start the data plane")
}

/// A short-header datagram: DCID `cid`, then `seq` (so that every datagram differs) and 32
/// octets of payload.
pub(crate) fn short_header(cid: &[u8], seq: u64) -> Vec<u8> {
    let mut datagram = vec![0x40];
    datagram.extend_from_slice(cid);
    datagram.extend_from_slice(&seq.to_be_bytes());
    datagram.extend_from_slice(&[0x5a; 32]);
    datagram
}

/// A client's v1 Initial with DCID `dcid`, carrying `seq`, padded to `len` octets.
pub(crate) fn initial(dcid: &[u8], seq: u64, len: usize) -> Vec<u8> {
    let mut datagram = vec![0xc0, 0, 0, 0, 1];
    datagram.push(u8::try_from(dcid.len()).expect("DCID length"));
    datagram.extend_from_slice(dcid);
    datagram.push(8);
    datagram.extend_from_slice(&[0xcc; 8]);
    datagram.extend_from_slice(&seq.to_be_bytes());
    datagram.resize(len.max(datagram.len()), 0);
    datagram
}

/// A client-chosen DCID, pseudo-random from `n`. Its codepoint is 7, which no configuration
/// decodes: it routes by the fallback, never by chance to a backend's server ID.
pub(crate) fn client_dcid(n: u64) -> [u8; 8] {
    let mut x = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let mut dcid = (x ^ (x >> 31)).to_be_bytes();
    dcid[0] |= 0xe0;
    dcid
}

/// Sorted copies, for comparing datagram sets.
pub(crate) fn sorted(mut items: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    items.sort();
    items
}
