//! One worker: an event loop on its own thread over its listening sockets (one per listening
//! address) and the upstream sockets of its flows.
//!
//! Sockets are registered edge-triggered with one `mio` poll. A socket with an event joins the
//! ready queue; each round serves every ready socket one receive batch (`recvmmsg`, GRO) and
//! requeues it until a receive would block, so that no socket (a flooded listener, a busy
//! flow) starves the others. Between rounds the worker takes up a new pool, publishes its
//! stats when asked, and forgets idle flows; it sleeps until the next flow lapses or a waker
//! call.
//!
//! Client to backend: each datagram of a batch is routed by the listener's router and leaves
//! through its flow's upstream socket. Backend to client: the datagrams received on an
//! upstream socket from a backend of the pool leave through the listening socket the client
//! used, from the address the client sent to. Both ways, each datagram keeps its ECN
//! codepoint, and consecutive datagrams of a batch bound for one place with one codepoint
//! leave as one send, with GSO for several ([`super::segments`]).

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token};
use qlb_router::{Decision, Pool, Router};
use quinn_udp::{BATCH_SIZE, EcnCodepoint, RecvMeta, Transmit, UdpSocketState};

use super::DataplaneOptions;
use super::control::Control;
use super::counters::WorkerCounters;
use super::flow_table::{FlowId, FlowTable};
use super::segments::{MAX_TRANSMIT_OCTETS, chunks, datagrams, transmits};
use super::socket;
use super::stats::{DataplaneDrop, Stats};

/// The token of the worker's waker.
pub(crate) const WAKER: Token = Token(0);
/// The token of the first listening socket; flows' tokens follow the listeners'.
const FIRST_LISTENER: usize = 1;
/// One receive buffer: the largest UDP payload, and the largest GRO batch (64 KiB).
const BUFFER_SIZE: usize = 1 << 16;
/// Readiness events taken per poll.
const EVENTS: usize = 1024;

pub(crate) struct Worker {
    index: usize,
    control: Arc<Control>,
    poll: Poll,
    events: Events,
    /// Sockets with datagrams waiting (or not yet known to be drained), in serving order.
    ready: VecDeque<Token>,
    buffers: Buffers,
    forwarder: Forwarder,
    pool_version: u64,
    stats_generation: u64,
}

/// Everything a datagram touches on its way through, apart from the buffer it is in.
struct Forwarder {
    listeners: Vec<Listener>,
    flows: FlowTable<FlowKey, Flow>,
    registry: Registry,
    pool: Arc<Pool>,
    /// Backend address -> index in `pool`: replies are taken from these addresses only.
    sources: HashMap<SocketAddr, usize>,
    counters: WorkerCounters,
    /// Scratch, per datagram of the batch being forwarded: where it lies in the buffers,
    /// where the router sends it (client batches), and where it leaves with its length.
    places: Vec<Place>,
    routes: Vec<Option<SocketAddr>>,
    exits: Vec<(Option<Exit>, usize)>,
    /// Scratch: single datagrams of several buffers gathered into one transmit.
    gather: Vec<u8>,
}

/// Where a datagram of the batch lies: its buffer, and its octets in the buffer.
struct Place {
    buffer: usize,
    octets: Range<usize>,
}

/// How a datagram leaves: through which socket, to where, with which codepoint, from which
/// local address. Neighbours with equal exits may leave in one transmit.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Exit {
    via: Source,
    destination: SocketAddr,
    ecn: Option<EcnCodepoint>,
    src_ip: Option<IpAddr>,
}

struct Listener {
    socket: UdpSocket,
    state: UdpSocketState,
    /// Bound to `0.0.0.0` or `[::]`: replies must name the address the client sent to.
    wildcard: bool,
    router: Router,
    ready: bool,
}

/// A flow: one client of one listening address, to backends of one address family.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct FlowKey {
    listener: usize,
    client: SocketAddr,
    ipv6_upstream: bool,
}

/// One or two integer writes instead of the derived field-by-field ones: the flow table's
/// keyed SipHash runs for every datagram, and each write costs about as much as compressing
/// its octets. Equal keys hash equally (the fields left out, IPv6 flow info and scope, and
/// listener bits shifted out, only make more keys share a hash).
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let rest = (self.listener as u64) << 17
            | u64::from(self.ipv6_upstream) << 16
            | u64::from(self.client.port());
        match self.client.ip() {
            IpAddr::V4(ip) => state.write_u64(u64::from(ip.to_bits()) << 32 ^ rest),
            IpAddr::V6(ip) => {
                state.write_u128(ip.to_bits());
                state.write_u64(rest);
            }
        }
    }
}

struct Flow {
    socket: UdpSocket,
    state: UdpSocketState,
    /// The address the client last sent to, when its listener is a wildcard.
    local_ip: Option<IpAddr>,
    ready: bool,
}

/// A socket the worker receives on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Source {
    Listener(usize),
    Flow(FlowId),
}

impl Worker {
    /// A worker serving `listeners` (bound sockets, one per listening address) with `poll`,
    /// whose waker is registered already.
    pub(crate) fn new(
        index: usize,
        control: Arc<Control>,
        poll: Poll,
        listeners: Vec<std::net::UdpSocket>,
        options: &DataplaneOptions,
    ) -> io::Result<Self> {
        // The version first: a pool published in between is taken up again, never missed.
        let pool_version = control.pool_version();
        let pool = control.pool();
        let registry = poll.registry().try_clone()?;
        let listeners = listeners
            .into_iter()
            .enumerate()
            .map(|(position, socket)| {
                let mut socket = UdpSocket::from_std(socket);
                let state = UdpSocketState::new((&socket).into())?;
                let wildcard = socket.local_addr()?.ip().is_unspecified();
                let token = Token(FIRST_LISTENER + position);
                registry.register(&mut socket, token, Interest::READABLE)?;
                Ok(Listener {
                    socket,
                    state,
                    wildcard,
                    router: Router::with_limits(Arc::clone(&pool), options.table_limits),
                    ready: false,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            index,
            control,
            poll,
            events: Events::with_capacity(EVENTS),
            ready: VecDeque::new(),
            buffers: Buffers::new(),
            forwarder: Forwarder {
                listeners,
                flows: FlowTable::new(options.max_flows, options.flow_idle_timeout),
                registry,
                sources: sources(&pool),
                counters: WorkerCounters::new(&pool),
                pool,
                places: Vec::new(),
                routes: Vec::new(),
                exits: Vec::new(),
                gather: Vec::new(),
            },
            pool_version,
            stats_generation: 0,
        })
    }

    pub(crate) fn index(&self) -> usize {
        self.index
    }

    /// Forwards until the data plane stops; fails only if polling fails.
    pub(crate) fn run(mut self) -> io::Result<()> {
        let _retire = Retire {
            control: Arc::clone(&self.control),
            worker: self.index,
        };
        let outcome = self.serve();
        self.control.publish(
            self.index,
            self.control.stats_wanted(),
            self.forwarder.stats(),
        );
        outcome
    }

    fn serve(&mut self) -> io::Result<()> {
        while !self.control.stopping() {
            self.take_up_control();
            let now = Instant::now();
            self.forwarder.expire(now);
            let timeout = if self.ready.is_empty() {
                self.forwarder
                    .flows
                    .next_expiry()
                    .map(|at| at.saturating_duration_since(now))
            } else {
                Some(Duration::ZERO)
            };
            match self.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
            for event in self.events.iter() {
                let token = event.token();
                if let Some(ready) = self.forwarder.ready_flag(token) {
                    if !*ready {
                        *ready = true;
                        self.ready.push_back(token);
                    }
                }
            }
            self.serve_ready();
        }
        Ok(())
    }

    /// Takes up a new pool and answers a stats request, if there is one.
    fn take_up_control(&mut self) {
        let version = self.control.pool_version();
        if version != self.pool_version {
            self.pool_version = version;
            self.forwarder.set_pool(self.control.pool());
            self.control.pool_taken_up(self.index, version);
        }
        let wanted = self.control.stats_wanted();
        if wanted != self.stats_generation {
            self.stats_generation = wanted;
            self.control
                .publish(self.index, wanted, self.forwarder.stats());
        }
    }

    /// One receive batch from every ready socket.
    fn serve_ready(&mut self) {
        for _ in 0..self.ready.len() {
            let Some(token) = self.ready.pop_front() else {
                break;
            };
            if self.serve_batch(token) {
                if let Some(ready) = self.forwarder.ready_flag(token) {
                    *ready = false;
                }
            } else {
                self.ready.push_back(token);
            }
        }
    }

    /// Receives and forwards one batch from the socket of `token`; true once it is drained
    /// (or gone).
    fn serve_batch(&mut self, token: Token) -> bool {
        let Some(source) = self.forwarder.source(token) else {
            return true;
        };
        let received = match source {
            Source::Listener(listener) => match self.forwarder.listeners.get(listener) {
                Some(l) => self.buffers.recv(&l.socket, &l.state),
                None => return true,
            },
            Source::Flow(id) => match self.forwarder.flows.get(id) {
                Some(flow) => self.buffers.recv(&flow.socket, &flow.state),
                None => return true,
            },
        };
        let count = match received {
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => {
                // Nothing to retry: the next datagram brings a new event.
                self.forwarder.counters.receive_error();
                return true;
            }
        };
        let batch = Batch {
            buffers: &self.buffers,
            count,
        };
        let now = Instant::now();
        match source {
            Source::Listener(listener) => self.forwarder.client_batch(listener, batch, now),
            Source::Flow(id) => self.forwarder.backend_batch(id, batch, now),
        }
        false
    }
}

impl Forwarder {
    fn source(&self, token: Token) -> Option<Source> {
        let first_flow = FIRST_LISTENER + self.listeners.len();
        match token.0 {
            t if t < FIRST_LISTENER => None,
            t if t < first_flow => Some(Source::Listener(t - FIRST_LISTENER)),
            t => Some(Source::Flow(FlowId::new(t - first_flow))),
        }
    }

    fn flow_token(&self, id: FlowId) -> Token {
        Token(FIRST_LISTENER + self.listeners.len() + id.slot())
    }

    fn ready_flag(&mut self, token: Token) -> Option<&mut bool> {
        match self.source(token)? {
            Source::Listener(listener) => Some(&mut self.listeners.get_mut(listener)?.ready),
            Source::Flow(id) => Some(&mut self.flows.get_mut(id)?.1.ready),
        }
    }

    fn set_pool(&mut self, pool: Arc<Pool>) {
        for listener in &mut self.listeners {
            listener.router.set_pool(Arc::clone(&pool));
        }
        self.counters.change_pool(&self.pool, &pool);
        self.sources = sources(&pool);
        self.pool = pool;
    }

    fn stats(&self) -> Stats {
        self.counters.snapshot(
            &self.pool,
            self.listeners.iter().map(|l| l.router.counters()),
            self.flows.len(),
        )
    }

    /// Forgets the flows idle since before `now - flow_idle_timeout`.
    fn expire(&mut self, now: Instant) {
        while let Some((_, mut flow)) = self.flows.expire(now) {
            // Closing the socket leaves the poll anyway; deregistering first also guarantees
            // that no event for the (reusable) token is still to come.
            self.registry.deregister(&mut flow.socket).ok();
            self.counters.flow_expired();
        }
    }

    /// Routes the datagrams of a receive batch from clients of `listener` and forwards them.
    fn client_batch(&mut self, listener: usize, batch: Batch<'_>, now: Instant) {
        let Some(l) = self.listeners.get_mut(listener) else {
            return;
        };
        self.places.clear();
        self.routes.clear();
        for (buffer, (meta, data)) in batch.iter().enumerate() {
            for octets in datagrams(data.len(), meta.stride) {
                let datagram = data.get(octets.clone()).unwrap_or_default();
                self.routes
                    .push(match l.router.route(datagram, meta.addr, now) {
                        Decision::Forward(forward) => Some(forward.address),
                        // The router counts its drops.
                        Decision::Drop(_) => None,
                    });
                self.places.push(Place { buffer, octets });
            }
        }
        let wildcard = l.wildcard;
        let routes = std::mem::take(&mut self.routes);
        let places = std::mem::take(&mut self.places);
        self.exits.clear();
        // Consecutive datagrams of one client mostly share a flow: look it up (or fail to
        // open it) once.
        let mut last: Option<(FlowKey, Result<FlowId, DataplaneDrop>)> = None;
        for (route, place) in routes.iter().zip(&places) {
            let (Some(backend), Some(meta)) = (*route, batch.meta(place.buffer)) else {
                self.exits.push((None, place.octets.len()));
                continue;
            };
            let key = FlowKey {
                listener,
                client: meta.addr,
                ipv6_upstream: backend.is_ipv6(),
            };
            let id = match last {
                Some((last_key, id)) if last_key == key => id,
                _ => self.flow(key, backend, now),
            };
            last = Some((key, id));
            let exit = match id {
                Ok(id) => {
                    if wildcard && meta.dst_ip.is_some() {
                        if let Some((_, flow)) = self.flows.get_mut(id) {
                            flow.local_ip = meta.dst_ip;
                        }
                    }
                    Some(Exit {
                        via: Source::Flow(id),
                        destination: backend,
                        ecn: meta.ecn,
                        src_ip: None,
                    })
                }
                Err(reason) => {
                    self.counters.dropped(reason, 1);
                    None
                }
            };
            self.exits.push((exit, place.octets.len()));
        }
        (self.routes, self.places) = (routes, places);
        self.send(batch);
    }

    /// Sends the datagrams of `batch` as `places` and `exits` say.
    fn send(&mut self, batch: Batch<'_>) {
        for (exit, run) in transmits(&self.exits, MAX_TRANSMIT_OCTETS) {
            let (socket, state) = match exit.via {
                Source::Listener(listener) => match self.listeners.get(listener) {
                    Some(l) => (&l.socket, &l.state),
                    None => continue,
                },
                Source::Flow(id) => match self.flows.get(id) {
                    Some(flow) => (&flow.socket, &flow.state),
                    None => continue,
                },
            };
            for piece in chunks(run, state.max_gso_segments()) {
                let Some(places) = self.places.get(piece.clone()) else {
                    continue;
                };
                let (Some(first), Some(last)) = (places.first(), places.last()) else {
                    continue;
                };
                let contents = if first.buffer == last.buffer {
                    // Consecutive datagrams of one buffer lie back to back.
                    batch.octets(first.buffer, first.octets.start..last.octets.end)
                } else {
                    self.gather.clear();
                    for place in places {
                        self.gather
                            .extend_from_slice(batch.octets(place.buffer, place.octets.clone()));
                    }
                    &self.gather
                };
                let transmit = Transmit {
                    destination: exit.destination,
                    ecn: exit.ecn,
                    contents,
                    segment_size: (places.len() > 1).then_some(first.octets.len()),
                    src_ip: exit.src_ip,
                };
                if let Err(reason) = send(socket, state, &transmit) {
                    self.counters.dropped(reason, piece.len());
                }
            }
        }
    }

    /// The flow of `key` (used now), opened for `backend`'s family if there is none.
    fn flow(
        &mut self,
        key: FlowKey,
        backend: SocketAddr,
        now: Instant,
    ) -> Result<FlowId, DataplaneDrop> {
        match self.flows.find(&key, now) {
            Some(id) => Ok(id),
            None => self.open_flow(key, backend, now),
        }
    }

    fn open_flow(
        &mut self,
        key: FlowKey,
        backend: SocketAddr,
        now: Instant,
    ) -> Result<FlowId, DataplaneDrop> {
        if self.flows.is_full() {
            self.expire(now);
        }
        if self.flows.is_full() {
            return Err(DataplaneDrop::FlowTableFull);
        }
        let flow = Flow::open(backend).map_err(|_| DataplaneDrop::UpstreamSocket)?;
        let id = self
            .flows
            .insert(key, flow, now)
            .map_err(|_| DataplaneDrop::FlowTableFull)?;
        let token = self.flow_token(id);
        let registered = match self.flows.get_mut(id) {
            Some((_, flow)) => self
                .registry
                .register(&mut flow.socket, token, Interest::READABLE)
                .is_ok(),
            None => false,
        };
        if !registered {
            self.flows.remove(id);
            return Err(DataplaneDrop::UpstreamSocket);
        }
        self.counters.flow_created();
        Ok(id)
    }

    /// Relays a receive batch from backends to the client of flow `id`.
    fn backend_batch(&mut self, id: FlowId, batch: Batch<'_>, now: Instant) {
        let Some((key, local_ip)) = self
            .flows
            .get_mut(id)
            .map(|(key, flow)| (*key, flow.local_ip))
        else {
            return;
        };
        self.places.clear();
        self.exits.clear();
        let mut touched = false;
        for (buffer, (meta, data)) in batch.iter().enumerate() {
            let start = self.places.len();
            self.places
                .extend(datagrams(data.len(), meta.stride).map(|octets| Place { buffer, octets }));
            let count = self.places.len() - start;
            let exit = match self.sources.get(&meta.addr) {
                Some(&backend) => {
                    self.counters.replied(backend, count, data.len());
                    touched = true;
                    Some(Exit {
                        via: Source::Listener(key.listener),
                        destination: key.client,
                        ecn: meta.ecn,
                        src_ip: local_ip,
                    })
                }
                None => {
                    self.counters.dropped(DataplaneDrop::UnknownSource, count);
                    None
                }
            };
            let places = self.places.get(start..).unwrap_or_default();
            self.exits
                .extend(places.iter().map(|place| (exit, place.octets.len())));
        }
        if touched {
            self.flows.touch(id, now);
        }
        self.send(batch);
    }
}

impl Flow {
    fn open(backend: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::from_std(socket::upstream(backend)?);
        let state = UdpSocketState::new((&socket).into())?;
        Ok(Self {
            socket,
            state,
            local_ip: None,
            ready: false,
        })
    }
}

/// Backend address -> index in `pool`; of backends sharing an address, the first.
fn sources(pool: &Pool) -> HashMap<SocketAddr, usize> {
    let mut sources = HashMap::with_capacity(pool.backends().len());
    for (index, backend) in pool.backends().iter().enumerate() {
        sources.entry(backend.address()).or_insert(index);
    }
    sources
}

fn send(
    socket: &UdpSocket,
    state: &UdpSocketState,
    transmit: &Transmit<'_>,
) -> Result<(), DataplaneDrop> {
    state
        .try_send(socket.into(), transmit)
        .map_err(|error| send_drop(&error))
}

/// Why a datagram that failed to send with `error` is dropped.
fn send_drop(error: &io::Error) -> DataplaneDrop {
    match error.kind() {
        io::ErrorKind::WouldBlock => DataplaneDrop::SendBlocked,
        _ if error.raw_os_error() == Some(libc::EMSGSIZE) => DataplaneDrop::Oversized,
        _ => DataplaneDrop::SendError,
    }
}

/// The worker's receive buffers: a batch of [`BUFFER_SIZE`] buffers and their metadata.
struct Buffers {
    storage: Box<[u8]>,
    metas: [RecvMeta; BATCH_SIZE],
}

impl Buffers {
    fn new() -> Self {
        Self {
            storage: vec![0; BATCH_SIZE * BUFFER_SIZE].into_boxed_slice(),
            metas: [RecvMeta::default(); BATCH_SIZE],
        }
    }

    /// Receives one batch from `socket`; returns how many buffers were filled.
    fn recv(&mut self, socket: &UdpSocket, state: &UdpSocketState) -> io::Result<usize> {
        let mut buffers = self.storage.chunks_mut(BUFFER_SIZE);
        let mut slices: [IoSliceMut<'_>; BATCH_SIZE] =
            std::array::from_fn(|_| IoSliceMut::new(buffers.next().unwrap_or_default()));
        state.recv(socket.into(), &mut slices, &mut self.metas)
    }
}

/// The buffers filled by the last receive.
#[derive(Clone, Copy)]
struct Batch<'a> {
    buffers: &'a Buffers,
    count: usize,
}

impl<'a> Batch<'a> {
    /// Each buffer received, with its metadata.
    fn iter(self) -> impl Iterator<Item = (&'a RecvMeta, &'a [u8])> {
        self.buffers
            .storage
            .chunks(BUFFER_SIZE)
            .zip(&self.buffers.metas)
            .take(self.count)
            .map(|(buffer, meta)| (meta, buffer.get(..meta.len).unwrap_or_default()))
    }

    fn meta(self, buffer: usize) -> Option<&'a RecvMeta> {
        self.buffers
            .metas
            .get(buffer)
            .filter(|_| buffer < self.count)
    }

    /// Octets `range` of buffer `buffer`.
    fn octets(self, buffer: usize, range: Range<usize>) -> &'a [u8] {
        let start = buffer * BUFFER_SIZE;
        self.buffers
            .storage
            .get(start + range.start..start + range.end)
            .unwrap_or_default()
    }
}

/// Marks the worker gone on the board when its thread ends, also by a panic.
struct Retire {
    control: Arc<Control>,
    worker: usize,
}

impl Drop for Retire {
    fn drop(&mut self) {
        self.control.retire(self.worker);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_failures_are_told_apart() {
        let drop_for = |errno| send_drop(&io::Error::from_raw_os_error(errno));
        assert_eq!(drop_for(libc::EAGAIN), DataplaneDrop::SendBlocked);
        assert_eq!(drop_for(libc::EMSGSIZE), DataplaneDrop::Oversized);
        assert_eq!(drop_for(libc::ENETUNREACH), DataplaneDrop::SendError);
    }

    #[test]
    fn tokens_name_the_waker_listeners_and_flow_slots() {
        let poll = Poll::new().expect("poll");
        let pool = Arc::new(Pool::new(quic_lb::Decoder::new(), []).expect("pool"));
        let control = Arc::new(Control::new(Arc::clone(&pool), Vec::new()));
        let listeners = vec![
            std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"),
            std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"),
        ];
        let options = DataplaneOptions::default();
        let worker = Worker::new(0, control, poll, listeners, &options).expect("worker");
        let forwarder = &worker.forwarder;
        assert!(forwarder.source(WAKER).is_none());
        assert!(matches!(
            forwarder.source(Token(1)),
            Some(Source::Listener(0))
        ));
        assert!(matches!(
            forwarder.source(Token(2)),
            Some(Source::Listener(1))
        ));
        let flow = FlowId::new(5);
        assert!(matches!(
            forwarder.source(forwarder.flow_token(flow)),
            Some(Source::Flow(id)) if id == flow
        ));
    }

    /// A socket on 127.0.0.1 set up by quinn-udp (GRO on, non-blocking).
    fn quinn_socket() -> (UdpSocket, UdpSocketState) {
        let socket = UdpSocket::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let state = UdpSocketState::new((&socket).into()).expect("quinn-udp");
        (socket, state)
    }

    /// Buffers received on `socket` until `wanted` datagrams have come, or 10 s: each as
    /// (sender, octets, datagram lengths).
    fn receive(
        socket: &UdpSocket,
        state: &UdpSocketState,
        wanted: usize,
    ) -> Vec<(SocketAddr, Vec<u8>, Vec<usize>)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buffers = Buffers::new();
        let mut received: Vec<(SocketAddr, Vec<u8>, Vec<usize>)> = Vec::new();
        while received.iter().map(|(_, _, l)| l.len()).sum::<usize>() < wanted
            && Instant::now() < deadline
        {
            let count = match buffers.recv(socket, state) {
                Ok(count) => count,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => panic!("receive: {e}"),
            };
            let batch = Batch {
                buffers: &buffers,
                count,
            };
            received.extend(batch.iter().map(|(meta, data)| {
                let lengths = datagrams(data.len(), meta.stride)
                    .map(|r| r.len())
                    .collect();
                (meta.addr, data.to_vec(), lengths)
            }));
        }
        received
    }

    /// The octets of every buffer `receive` returned, in order.
    fn joined(received: &[(SocketAddr, Vec<u8>, Vec<usize>)]) -> Vec<u8> {
        received
            .iter()
            .flat_map(|(_, octets, _)| octets.clone())
            .collect()
    }

    /// A short-header datagram of `len` octets, filled with `fill`.
    fn datagram(len: usize, fill: u8) -> Vec<u8> {
        let mut datagram = vec![fill; len];
        datagram[0] = 0x40;
        datagram
    }

    #[test]
    fn consecutive_datagrams_of_a_flow_leave_together_whole_and_in_order_both_ways() {
        let (backend, backend_state) = quinn_socket();
        let pool = Pool::new(
            quic_lb::Decoder::new(),
            [qlb_router::Backend::new(
                "b1",
                backend.local_addr().expect("bound"),
            )],
        )
        .expect("pool");
        let control = Arc::new(Control::new(Arc::new(pool), Vec::new()));
        let listener = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let listen = listener.local_addr().expect("bound");
        let mut worker = Worker::new(
            0,
            control,
            Poll::new().expect("poll"),
            vec![listener],
            &DataplaneOptions::default(),
        )
        .expect("worker");
        let (a, a_state) = quinn_socket();
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");

        // Queued before the worker looks, so that one receive batch takes them all: client a
        // sends a run of four (the last shorter), two more, then b one, then a one.
        let from_a = [
            (1200, 1),
            (1200, 2),
            (1200, 3),
            (700, 4),
            (1200, 5),
            (1200, 6),
        ];
        for (len, fill) in from_a {
            a.send_to(&datagram(len, fill), listen).expect("send");
        }
        b.send_to(&datagram(1200, 7), listen).expect("send");
        a.send_to(&datagram(1200, 8), listen).expect("send");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!worker.serve_batch(Token(FIRST_LISTENER)), "a batch came");

        let received = receive(&backend, &backend_state, 8);
        let sent = from_a.into_iter().chain([(1200, 7), (1200, 8)]);
        assert_eq!(
            joined(&received),
            sent.flat_map(|(len, fill)| datagram(len, fill))
                .collect::<Vec<_>>(),
            "every octet, in order"
        );
        let flow_a = received[0].0;
        let shape: Vec<(bool, Vec<usize>)> = received
            .iter()
            .map(|(from, _, lengths)| (*from == flow_a, lengths.clone()))
            .collect();
        if worker.forwarder.listeners[0].state.max_gso_segments() >= 4 {
            assert_eq!(
                shape,
                [
                    (true, vec![1200, 1200, 1200, 700]),
                    (true, vec![1200, 1200]),
                    (false, vec![1200]),
                    (true, vec![1200]),
                ]
            );
        }

        // Three replies to a, sent one by one, reach a the same way, from the listen address.
        let replies = [(1200, 9), (1200, 10), (300, 11)];
        for (len, fill) in replies {
            backend.send_to(&datagram(len, fill), flow_a).expect("send");
        }
        std::thread::sleep(Duration::from_millis(50));
        let flow_token = worker.forwarder.flow_token(FlowId::new(0));
        assert!(!worker.serve_batch(flow_token), "a batch came");
        let received = receive(&a, &a_state, 3);
        let sent = replies
            .into_iter()
            .flat_map(|(len, fill)| datagram(len, fill));
        assert_eq!(
            joined(&received),
            sent.collect::<Vec<_>>(),
            "every octet, in order"
        );
        assert!(received.iter().all(|(from, _, _)| *from == listen));
        if worker.forwarder.listeners[0].state.max_gso_segments() >= 3 {
            assert_eq!(received.len(), 1, "one send");
        }
    }
}
