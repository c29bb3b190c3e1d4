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
//! Client to backend: each datagram of a batch is routed by the listener's router; runs of
//! consecutive datagrams of one buffer for one backend leave through the flow's upstream
//! socket as one send (GSO for several). Backend to client: a batch received on an upstream
//! socket from a backend of the pool leaves through the listening socket the client used,
//! from the address the client sent to, with its ECN codepoint.

use std::collections::{HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token};
use qlb_router::{Decision, Pool, Router};
use quinn_udp::{BATCH_SIZE, RecvMeta, Transmit, UdpSocketState};

use super::DataplaneOptions;
use super::control::Control;
use super::counters::WorkerCounters;
use super::flow_table::{FlowId, FlowTable};
use super::segments::{chunks, datagram_count, datagrams, runs, span};
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
    /// Scratch: the routing outcome of each datagram of the buffer being forwarded.
    targets: Vec<Option<SocketAddr>>,
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
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct FlowKey {
    listener: usize,
    client: SocketAddr,
    ipv6_upstream: bool,
}

struct Flow {
    socket: UdpSocket,
    state: UdpSocketState,
    /// The address the client last sent to, when its listener is a wildcard.
    local_ip: Option<IpAddr>,
    ready: bool,
}

/// A socket the worker receives on.
#[derive(Clone, Copy)]
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
                targets: Vec::new(),
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
        let received = match received {
            Ok(received) => received,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => {
                // Nothing to retry: the next datagram brings a new event.
                self.forwarder.counters.receive_error();
                return true;
            }
        };
        let now = Instant::now();
        for (meta, data) in received {
            match source {
                Source::Listener(listener) => {
                    self.forwarder.client_buffer(listener, meta, data, now)
                }
                Source::Flow(id) => self.forwarder.backend_buffer(id, meta, data, now),
            }
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

    /// Routes the datagrams of one receive buffer from a client and forwards them.
    fn client_buffer(&mut self, listener: usize, meta: &RecvMeta, data: &[u8], now: Instant) {
        let Some(l) = self.listeners.get_mut(listener) else {
            return;
        };
        let mut targets = std::mem::take(&mut self.targets);
        targets.clear();
        targets.extend(datagrams(data, meta.stride).map(|datagram| {
            match l.router.route(datagram, meta.addr, now) {
                Decision::Forward(forward) => Some(forward.address),
                // The router counts its drops.
                Decision::Drop(_) => None,
            }
        }));
        let local_ip = if l.wildcard { meta.dst_ip } else { None };
        for (backend, run) in runs(&targets) {
            let key = FlowKey {
                listener,
                client: meta.addr,
                ipv6_upstream: backend.is_ipv6(),
            };
            match self.flow(key, backend, now) {
                Ok(id) => self.send_run(id, local_ip, backend, meta, data, run),
                Err(reason) => self.counters.dropped(reason, run.len()),
            }
        }
        self.targets = targets;
    }

    /// Sends datagrams `run` of `data` to `backend` through flow `id`.
    fn send_run(
        &mut self,
        id: FlowId,
        local_ip: Option<IpAddr>,
        backend: SocketAddr,
        meta: &RecvMeta,
        data: &[u8],
        run: Range<usize>,
    ) {
        let Some((_, flow)) = self.flows.get_mut(id) else {
            return;
        };
        if local_ip.is_some() {
            flow.local_ip = local_ip;
        }
        for piece in chunks(run, flow.state.max_gso_segments()) {
            let (contents, segment_size) = span(data, meta.stride, piece.clone());
            let transmit = Transmit {
                destination: backend,
                ecn: meta.ecn,
                contents,
                segment_size,
                src_ip: None,
            };
            if let Err(reason) = send(&flow.socket, &flow.state, &transmit) {
                self.counters.dropped(reason, piece.len());
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

    /// Relays one receive buffer from a backend to the client of flow `id`.
    fn backend_buffer(&mut self, id: FlowId, meta: &RecvMeta, data: &[u8], now: Instant) {
        let count = datagram_count(data, meta.stride);
        let Some(&backend) = self.sources.get(&meta.addr) else {
            self.counters.dropped(DataplaneDrop::UnknownSource, count);
            return;
        };
        self.counters.replied(backend, count, data.len());
        self.flows.touch(id, now);
        let Some((key, flow)) = self.flows.get_mut(id) else {
            return;
        };
        let Some(listener) = self.listeners.get(key.listener) else {
            return;
        };
        for piece in chunks(0..count, listener.state.max_gso_segments()) {
            let (contents, segment_size) = span(data, meta.stride, piece.clone());
            let transmit = Transmit {
                destination: key.client,
                ecn: meta.ecn,
                contents,
                segment_size,
                src_ip: flow.local_ip,
            };
            if let Err(reason) = send(&listener.socket, &listener.state, &transmit) {
                self.counters.dropped(reason, piece.len());
            }
        }
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

    /// One batch from `socket`: each buffer received, with its metadata.
    fn recv<'a>(
        &'a mut self,
        socket: &UdpSocket,
        state: &UdpSocketState,
    ) -> io::Result<impl Iterator<Item = (&'a RecvMeta, &'a [u8])> + use<'a>> {
        let count = {
            let mut buffers = self.storage.chunks_mut(BUFFER_SIZE);
            let mut slices: [IoSliceMut<'_>; BATCH_SIZE] =
                std::array::from_fn(|_| IoSliceMut::new(buffers.next().unwrap_or_default()));
            state.recv(socket.into(), &mut slices, &mut self.metas)?
        };
        Ok(self
            .storage
            .chunks(BUFFER_SIZE)
            .zip(&self.metas)
            .take(count)
            .filter_map(|(buffer, meta)| Some((meta, buffer.get(..meta.len)?))))
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
}
