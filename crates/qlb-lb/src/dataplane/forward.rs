//! The forwarding logic: what a datagram touches on its way through, apart from the buffer it
//! is in.
//!
//! Client to backend: each datagram of a batch is routed by the listener's router (after
//! Retry offload, when on), then, in `proxy` mode, leaves through its flow's upstream socket,
//! connected to the backend; in `gue` mode it is encapsulated into the outbox (inner source
//! the client, inner destination the VIP), which leaves once the listeners are drained,
//! grouped by backend and by the GUE socket each client hashes to ([`super::outbox`]).
//! Backend to client: in `proxy` mode, the datagrams received on an upstream
//! socket from a backend of the pool leave through the listening socket the client used, from
//! the address the client sent to; in `gue` mode, those received on a GUE socket from a
//! backend of the pool are decapsulated and leave through the listening socket of their inner
//! source (the VIP) to their inner destination (the client). Every way, each datagram keeps
//! its ECN codepoint, and consecutive datagrams of a batch bound for one place through one
//! socket with one codepoint leave as one send, with GSO for several ([`super::segments`]).
//!
//! Poll tokens name the sockets: the waker's first, then one per listening address, then one
//! per GUE port, then one per flow slot.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use qlb_router::{Decision, Pool, Router};
use quinn_udp::{EcnCodepoint, Transmit, UdpSocketState};

use super::buffers::{Batch, DatagramSpan, Octets, back_to_back, broken};
use super::flow_key::FlowKey;
use super::flow_table::{FlowId, FlowTable, Full};
use super::gue::{inner_ecn, is_client, reply_ecn, reply_listener, vip};
use super::options::DataplaneOptions;
use super::outbox::Outbox;
use super::retry::{RetryState, Verdict, exchange, unix_now};
use super::segments::{MAX_TRANSMIT_OCTETS, chunks, datagrams, transmits};
use super::send::send;
use super::socket;
use super::stats::{DataplaneDrop, FlowRefusal, Stats};
use super::worker_counters::WorkerCounters;

/// The token of the worker's waker.
pub(super) const WAKER: Token = Token(0);
/// The token of the first listening socket; the GUE sockets' follow the listeners', and the
/// flows' follow those.
const FIRST_LISTENER: usize = 1;

/// Everything a datagram touches on its way through, apart from the buffer it is in.
pub(super) struct Forwarder {
    listeners: Vec<Listener>,
    /// `gue` mode's sockets, one per GUE port; none in `proxy` mode, which is how the
    /// forwarder tells the modes apart.
    gue: Vec<GueSocket>,
    /// `proxy` mode's flows (none in `gue` mode).
    flows: FlowTable<FlowKey, Flow>,
    registry: Registry,
    pool: Arc<Pool>,
    /// Backend address -> index in `pool`: replies are taken from these addresses only (and
    /// each flow's socket is connected to one of them).
    sources: HashMap<SocketAddr, usize>,
    counters: WorkerCounters,
    /// Scratch, per datagram of the batch being forwarded: where it lies in the buffers,
    /// where the router sends it (client batches), and where it leaves with its length.
    spans: Vec<DatagramSpan>,
    routes: Vec<Option<SocketAddr>>,
    exits: Vec<(Option<Exit>, usize)>,
    /// Scratch: single datagrams of several buffers gathered into one transmit.
    gather: Vec<u8>,
    /// `gue` mode: client datagrams encapsulated and waiting to be sent.
    outbox: Outbox,
    /// Retry offload, when on.
    retry: Option<RetryState>,
    /// Scratch of a client batch: the datagrams (by span index) whose valid Retry token is
    /// exchanged for one naming their flow's upstream address; none while Retry is off.
    exchanges: Vec<(usize, qlb_retry::ValidToken)>,
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
    /// Its bound address, port 0 resolved.
    local: SocketAddr,
    /// Bound to `0.0.0.0` or `[::]`: replies must name the address the client sent to.
    wildcard: bool,
    router: Router,
    ready: bool,
}

/// One of the worker's sockets on a GUE port.
struct GueSocket {
    socket: UdpSocket,
    state: UdpSocketState,
    ready: bool,
}

struct Flow {
    socket: UdpSocket,
    state: UdpSocketState,
    /// The address the client last sent to, when its listener is a wildcard.
    local_ip: Option<IpAddr>,
    /// The address the backend sees this flow's datagrams come from, once Retry offload
    /// needed it.
    seen_as: Option<SocketAddr>,
    ready: bool,
}

/// A socket the worker receives on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    Listener(usize),
    /// A GUE socket, by port (index from `gue.bind`'s).
    Gue(usize),
    Flow(FlowId),
}

impl Forwarder {
    /// A forwarder for `listeners` (bound sockets, one per listening address) and
    /// `gue_sockets` (one per GUE port in `gue` mode, else none), which it registers with
    /// `registry` (flows' sockets follow), routing with `pool`.
    pub(super) fn new(
        listeners: Vec<std::net::UdpSocket>,
        gue_sockets: Vec<std::net::UdpSocket>,
        registry: Registry,
        pool: Arc<Pool>,
        options: &DataplaneOptions,
    ) -> io::Result<Self> {
        let first_gue = FIRST_LISTENER + listeners.len();
        let listeners = listeners
            .into_iter()
            .enumerate()
            .map(|(position, socket)| {
                let (socket, state, local) =
                    register(socket, &registry, Token(FIRST_LISTENER + position))?;
                Ok(Listener {
                    socket,
                    state,
                    local,
                    wildcard: local.ip().is_unspecified(),
                    router: Router::with_limits(Arc::clone(&pool), options.table_limits),
                    ready: false,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let gue = gue_sockets
            .into_iter()
            .enumerate()
            .map(|(port, socket)| {
                let (socket, state, _) = register(socket, &registry, Token(first_gue + port))?;
                Ok(GueSocket {
                    socket,
                    state,
                    ready: false,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(Self {
            listeners,
            gue,
            flows: FlowTable::new(
                options.max_flows,
                options.max_unconfirmed_flows,
                options.flow_idle_timeout,
            ),
            registry,
            sources: sources(&pool),
            counters: WorkerCounters::new(&pool),
            pool,
            spans: Vec::new(),
            routes: Vec::new(),
            exits: Vec::new(),
            gather: Vec::new(),
            outbox: Outbox::default(),
            retry: options.retry.clone().map(RetryState::new),
            exchanges: Vec::new(),
        })
    }

    /// The socket of `source`, if it is still there.
    #[inline]
    pub(super) fn socket(&self, source: Source) -> Option<(&UdpSocket, &UdpSocketState)> {
        socket_of(&self.listeners, &self.gue, &self.flows, source)
    }

    /// When the next flow lapses, if there is one.
    pub(super) fn next_expiry(&self) -> Option<Instant> {
        self.flows.next_expiry()
    }

    /// Counts a failed receive call.
    pub(super) fn receive_error(&mut self) {
        self.counters.receive_error();
    }

    pub(super) fn source(&self, token: Token) -> Option<Source> {
        let first_gue = FIRST_LISTENER + self.listeners.len();
        let first_flow = first_gue + self.gue.len();
        match token.0 {
            t if t < FIRST_LISTENER => None,
            t if t < first_gue => Some(Source::Listener(t - FIRST_LISTENER)),
            t if t < first_flow => Some(Source::Gue(t - first_gue)),
            t => Some(Source::Flow(FlowId::new(t - first_flow))),
        }
    }

    pub(super) fn flow_token(&self, id: FlowId) -> Token {
        Token(FIRST_LISTENER + self.listeners.len() + self.gue.len() + id.slot())
    }

    pub(super) fn ready_flag(&mut self, token: Token) -> Option<&mut bool> {
        match self.source(token)? {
            Source::Listener(listener) => Some(&mut self.listeners.get_mut(listener)?.ready),
            Source::Gue(port) => Some(&mut self.gue.get_mut(port)?.ready),
            Source::Flow(id) => Some(&mut self.flows.get_mut(id)?.1.ready),
        }
    }

    pub(super) fn set_pool(&mut self, pool: Arc<Pool>) {
        for listener in &mut self.listeners {
            listener.router.set_pool(Arc::clone(&pool));
        }
        self.counters.change_pool(&self.pool, &pool);
        if let Some(retry) = &mut self.retry {
            retry.set_pool();
        }
        self.sources = sources(&pool);
        self.pool = pool;
    }

    pub(super) fn stats(&self) -> Stats {
        let mut stats = self.counters.snapshot(
            &self.pool,
            self.listeners.iter().map(|l| l.router.counters()),
            (self.flows.len(), self.flows.unconfirmed()),
        );
        if let Some(retry) = &self.retry {
            stats.retry = retry.counts;
        }
        stats
    }

    /// Forgets the flows idle since before `now - flow_idle_timeout`.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some((_, flow)) = self.flows.expire(now) {
            self.close(flow);
            self.counters.flow_expired();
        }
    }

    /// Routes the datagrams of a receive batch from clients of `listener` and forwards them.
    pub(super) fn client_batch(&mut self, listener: usize, batch: Batch<'_>, now: Instant) {
        if self.route(listener, batch, now) {
            match self.gue.is_empty() {
                true => self.proxy(listener, batch, now),
                false => self.encapsulate(listener, batch),
            }
        }
    }

    /// The step both modes share: Retry offload (when on) and the router's decision for each
    /// datagram of a client batch of `listener`, into `spans`, `routes` and (`proxy` mode)
    /// `exchanges`. False if there is no such listener.
    fn route(&mut self, listener: usize, batch: Batch<'_>, now: Instant) -> bool {
        let Some(l) = self.listeners.get_mut(listener) else {
            return false;
        };
        self.spans.clear();
        self.routes.clear();
        self.exchanges.clear();
        // Proxy-mode backends see the flow's upstream address, so a valid token must be
        // exchanged for one naming it; GUE-mode backends see the client's, which it names.
        let reseal = self.gue.is_empty();
        let unix_now = self.retry.as_ref().map(|_| unix_now());
        for (buffer, (meta, data)) in batch.iter().enumerate() {
            for octets in datagrams(data.len(), meta.stride) {
                let datagram = data
                    .get(octets.clone())
                    .unwrap_or_else(|| broken("a datagram lies in its buffer"));
                let verdict = match (&mut self.retry, unix_now) {
                    (Some(retry), Some(now)) => retry.inspect(datagram, meta.addr, &l.router, now),
                    _ => Verdict::Route,
                };
                let (route, exchange) = match verdict {
                    Verdict::Route => (true, None),
                    Verdict::Exchange(valid) if reseal => (true, Some(valid)),
                    Verdict::Exchange(_) => {
                        if let Some(retry) = &mut self.retry {
                            retry.counts.tokens_valid += 1;
                        }
                        (true, None)
                    }
                    Verdict::Drop => (false, None),
                    Verdict::Reply(retry) => {
                        let transmit = Transmit {
                            destination: meta.addr,
                            ecn: None,
                            contents: &retry,
                            segment_size: None,
                            src_ip: if l.wildcard { meta.dst_ip } else { None },
                        };
                        if let Err(reason) = send(&l.socket, &l.state, &transmit) {
                            self.counters.dropped(reason, 1);
                        }
                        (false, None)
                    }
                };
                self.routes.push(match route {
                    false => None,
                    true => match l.router.route(datagram, meta.addr, now) {
                        Decision::Forward(forward) => Some(forward.address),
                        // The router counts its drops.
                        Decision::Drop(_) => None,
                    },
                });
                if let Some(valid) = exchange {
                    self.exchanges.push((self.spans.len(), valid));
                }
                self.spans.push(DatagramSpan { buffer, octets });
            }
        }
        true
    }

    /// `proxy` mode: sends the routed datagrams of a client batch of `listener` through their
    /// flows' upstream sockets, opening flows as needed.
    fn proxy(&mut self, listener: usize, batch: Batch<'_>, now: Instant) {
        let Some(wildcard) = self.listeners.get(listener).map(|l| l.wildcard) else {
            return;
        };
        let routes = std::mem::take(&mut self.routes);
        let spans = std::mem::take(&mut self.spans);
        self.exits.clear();
        // Consecutive datagrams of one client mostly share a flow: look it up (or fail to
        // open it) once.
        let mut last: Option<(FlowKey, Result<FlowId, DataplaneDrop>)> = None;
        let exchanges = std::mem::take(&mut self.exchanges);
        // The few datagrams with a token to exchange, in span order.
        let mut exchanging = exchanges.iter().peekable();
        for (index, (route, span)) in routes.iter().zip(&spans).enumerate() {
            let exchanged = exchanging
                .next_if(|(at, _)| *at == index)
                .map(|(_, valid)| valid);
            let Some(backend) = *route else {
                self.exits.push((None, span.octets.len()));
                continue;
            };
            let Some(meta) = batch.meta(span.buffer) else {
                // A span of this batch names one of its buffers.
                broken::<()>("a span's buffer is in its batch");
                self.exits.push((None, span.octets.len()));
                continue;
            };
            let key = FlowKey {
                listener,
                client: meta.addr,
                backend,
            };
            let id = match last {
                Some((last_key, id)) if last_key == key => id,
                _ => self.flow(key, now),
            };
            last = Some((key, id));
            let exit = match id {
                Ok(id) => {
                    if wildcard && meta.dst_ip.is_some() {
                        if let Some((_, flow)) = self.flows.get_mut(id) {
                            flow.local_ip = meta.dst_ip;
                        }
                    }
                    let exit = Exit {
                        via: Source::Flow(id),
                        destination: backend,
                        ecn: meta.ecn,
                        src_ip: None,
                    };
                    match exchanged {
                        Some(valid) => {
                            // It leaves alone: resealed, it is no longer in the buffers.
                            self.send_exchanged(exit, id, batch.octets(span), valid);
                            None
                        }
                        None => Some(exit),
                    }
                }
                Err(reason) => {
                    self.counters.dropped(reason, 1);
                    None
                }
            };
            self.exits.push((exit, span.octets.len()));
        }
        (self.routes, self.spans, self.exchanges) = (routes, spans, exchanges);
        self.send(Octets::Batch(batch));
    }

    /// `gue` mode: encapsulates the routed datagrams of a client batch of `listener` into the
    /// outbox, each bound for the GUE socket its client hashes to; the outbox leaves when the
    /// worker calls [`Forwarder::flush`], or here when it fills. Nothing is looked up or kept
    /// per client.
    fn encapsulate(&mut self, listener: usize, batch: Batch<'_>) {
        let Some(local) = self.listeners.get(listener).map(|l| l.local) else {
            return;
        };
        let ports = self.gue.len();
        // Taken: a full outbox is sent on the way, and sending uses the scratch vectors.
        let (routes, spans) = (
            std::mem::take(&mut self.routes),
            std::mem::take(&mut self.spans),
        );
        for (route, span) in routes.iter().zip(&spans) {
            let Some(backend) = *route else { continue };
            let Some(meta) = batch.meta(span.buffer) else {
                broken::<()>("a span's buffer is in its batch");
                continue;
            };
            if self.outbox.is_full() {
                self.flush();
            }
            let ecn = inner_ecn(meta.ecn);
            let datagram = batch.octets(span);
            let pushed = self.outbox.push(
                qlb_gue::source_port_index(meta.addr, ports),
                backend,
                meta.ecn,
                |out| {
                    vip(local, meta.dst_ip).is_some_and(|vip| {
                        qlb_gue::encapsulate(out, meta.addr, vip, ecn, datagram).is_ok()
                    })
                },
            );
            if !pushed {
                self.counters.dropped(DataplaneDrop::EncapsulationFailed, 1);
            }
        }
        (self.routes, self.spans) = (routes, spans);
    }

    /// `gue` mode: sends what waits in the outbox, the datagrams to one backend through one
    /// GUE socket together (GSO), each client's in the order they came.
    pub(super) fn flush(&mut self) {
        if self.outbox.len() == 0 {
            return;
        }
        let mut outbox = std::mem::take(&mut self.outbox);
        let (waiting, octets) = outbox.sorted();
        self.spans.clear();
        self.exits.clear();
        for w in waiting {
            self.spans.push(DatagramSpan {
                buffer: 0,
                octets: w.octets.clone(),
            });
            let exit = Exit {
                via: Source::Gue(w.port),
                destination: w.backend,
                ecn: w.ecn,
                src_ip: None,
            };
            self.exits.push((Some(exit), w.octets.len()));
        }
        self.send(Octets::Scratch(octets));
        outbox.clear();
        self.outbox = outbox;
    }

    /// `gue` mode: relays a receive batch of a GUE socket, backends' encapsulated replies:
    /// each from a backend of the pool is decapsulated and leaves from the listening socket
    /// of its inner source (the VIP) to its inner destination (the client). Nothing is looked
    /// up or kept per client, so any worker of any instance relays any reply.
    pub(super) fn gue_batch(&mut self, batch: Batch<'_>) {
        self.spans.clear();
        self.exits.clear();
        for (buffer, (meta, data)) in batch.iter().enumerate() {
            let backend = self.sources.get(&meta.addr).copied();
            for octets in datagrams(data.len(), meta.stride) {
                let packet = data
                    .get(octets.clone())
                    .unwrap_or_else(|| broken("a datagram lies in its buffer"));
                let outcome = backend
                    .ok_or(DataplaneDrop::UnknownSource)
                    .and_then(|backend| Ok((backend, reply(&self.listeners, packet, meta.ecn)?)));
                let (exit, payload) = match outcome {
                    Ok((backend, (exit, payload))) => {
                        self.counters.replied(backend, 1, payload);
                        (Some(exit), payload)
                    }
                    Err(reason) => {
                        self.counters.dropped(reason, 1);
                        (None, 0)
                    }
                };
                // Decapsulation checked the inner lengths against the packet: the payload is
                // its tail.
                self.spans.push(DatagramSpan {
                    buffer,
                    octets: octets.end - payload..octets.end,
                });
                self.exits.push((exit, payload));
            }
        }
        self.send(Octets::Batch(batch));
    }

    /// Sends the Initial `datagram` of flow `id` with its valid Retry token exchanged for one
    /// naming the address the backend sees. A later Initial of the handshake, whose DCID is
    /// by then the backend's own and so no longer gives its keys, leaves unchanged: the
    /// backend reads a token only in a connection's first packet.
    fn send_exchanged(
        &mut self,
        exit: Exit,
        id: FlowId,
        datagram: &[u8],
        valid: &qlb_retry::ValidToken,
    ) {
        let (Some(retry), Some((_, flow))) = (&mut self.retry, self.flows.get_mut(id)) else {
            return;
        };
        retry.counts.tokens_valid += 1;
        let resealed = flow
            .seen_as(exit.destination)
            .and_then(|seen_as| exchange(retry.keys(), datagram, valid, seen_as));
        let transmit = Transmit {
            destination: exit.destination,
            ecn: exit.ecn,
            contents: resealed.as_deref().unwrap_or(datagram),
            segment_size: None,
            src_ip: None,
        };
        if let Err(reason) = send(&flow.socket, &flow.state, &transmit) {
            self.counters.dropped(reason, 1);
        }
    }

    /// Sends the datagrams of `octets` as `spans` and `exits` say.
    fn send(&mut self, octets: Octets<'_>) {
        debug_assert_eq!(self.exits.len(), self.spans.len(), "an exit per datagram");
        for (exit, run) in transmits(&self.exits, MAX_TRANSMIT_OCTETS) {
            // Not `self.socket`: the sends below count into `self` meanwhile.
            let Some((socket, state)) =
                socket_of(&self.listeners, &self.gue, &self.flows, exit.via)
            else {
                continue;
            };
            for piece in chunks(run, state.max_gso_segments()) {
                // Pieces of runs of `exits`, which are as long as `spans`, and never empty.
                let spans: &[DatagramSpan] = self
                    .spans
                    .get(piece.clone())
                    .unwrap_or_else(|| broken("a transmit's datagrams are in the batch"));
                let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
                    broken::<()>("a transmit has datagrams");
                    continue;
                };
                let contents = if back_to_back(spans) {
                    octets.range(first.buffer, first.octets.start..last.octets.end)
                } else {
                    self.gather.clear();
                    for span in spans {
                        self.gather.extend_from_slice(octets.span(span));
                    }
                    &self.gather
                };
                let transmit = Transmit {
                    destination: exit.destination,
                    ecn: exit.ecn,
                    contents,
                    segment_size: (spans.len() > 1).then_some(first.octets.len()),
                    src_ip: exit.src_ip,
                };
                if let Err(reason) = send(socket, state, &transmit) {
                    self.counters.dropped(reason, piece.len());
                }
            }
        }
    }

    /// The flow of `key` (used now), opened if there is none.
    fn flow(&mut self, key: FlowKey, now: Instant) -> Result<FlowId, DataplaneDrop> {
        match self.flows.find(&key, now) {
            Some(id) => Ok(id),
            None => self.open_flow(key, now).map_err(|refusal| {
                self.counters.flow_refused(refusal);
                refusal.drop()
            }),
        }
    }

    /// Opens an unconfirmed flow for `key`, evicting the least recently used unconfirmed flow
    /// if its class or the table is full.
    fn open_flow(&mut self, key: FlowKey, now: Instant) -> Result<FlowId, FlowRefusal> {
        if self.flows.is_full() {
            self.expire(now);
        }
        // Room first, so that a refused flow costs no socket.
        match self.flows.make_room(now) {
            Ok(None) => {}
            Ok(Some((reason, _, flow))) => {
                self.close(flow);
                self.counters.flow_evicted(reason);
            }
            Err(Full) => return Err(FlowRefusal::TableFull),
        }
        let flow = Flow::open(key.backend).map_err(|_| FlowRefusal::UpstreamSocket)?;
        let id = self
            .flows
            .insert(key, flow, now)
            .map_err(|_| FlowRefusal::TableFull)?;
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
            return Err(FlowRefusal::UpstreamSocket);
        }
        self.counters.flow_created();
        Ok(id)
    }

    /// Closes a flow taken out of the table. Closing the socket leaves the poll anyway;
    /// deregistering first also guarantees that no event for the (reusable) token is still
    /// to come.
    fn close(&self, mut flow: Flow) {
        self.registry.deregister(&mut flow.socket).ok();
    }

    /// Relays a receive batch from backends to the client of flow `id`.
    pub(super) fn backend_batch(&mut self, id: FlowId, batch: Batch<'_>, now: Instant) {
        let Some((key, local_ip)) = self
            .flows
            .get_mut(id)
            .map(|(key, flow)| (*key, flow.local_ip))
        else {
            return;
        };
        self.spans.clear();
        self.exits.clear();
        let mut touched = false;
        for (buffer, (meta, data)) in batch.iter().enumerate() {
            let start = self.spans.len();
            self.spans.extend(
                datagrams(data.len(), meta.stride).map(|octets| DatagramSpan { buffer, octets }),
            );
            let count = self.spans.len() - start;
            // The socket is connected to the flow's backend, so the kernel delivers nothing
            // else; the lookup still names the backend for the counters, and drops what a
            // backend sends after a new pool has removed it.
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
            let spans: &[DatagramSpan] = self
                .spans
                .get(start..)
                .unwrap_or_else(|| broken("the spans just added are there"));
            self.exits
                .extend(spans.iter().map(|span| (exit, span.octets.len())));
        }
        // A reply from the backend confirms the flow: a spoofed source never gets one to
        // answer, so confirmed flows are the ones with a real client behind them.
        if touched && self.flows.confirm(id, now) {
            self.counters.flow_confirmed();
        }
        self.send(Octets::Batch(batch));
    }
}

impl Flow {
    /// A flow whose upstream socket is connected to `backend`.
    fn open(backend: SocketAddr) -> io::Result<Self> {
        let socket = UdpSocket::from_std(socket::upstream(backend)?);
        let state = UdpSocketState::new((&socket).into())?;
        Ok(Self {
            socket,
            state,
            local_ip: None,
            seen_as: None,
            ready: false,
        })
    }

    /// The address `backend` sees this flow's datagrams come from: the socket's port and the
    /// source address the kernel picks toward `backend`.
    fn seen_as(&mut self, backend: SocketAddr) -> Option<SocketAddr> {
        if self.seen_as.is_none() {
            let local = self.socket.local_addr().ok()?;
            let ip = match local.ip().is_unspecified() {
                false => local.ip(),
                true => {
                    let probe = std::net::UdpSocket::bind(SocketAddr::new(local.ip(), 0)).ok()?;
                    probe.connect(backend).ok()?;
                    probe.local_addr().ok()?.ip()
                }
            };
            self.seen_as = Some(SocketAddr::new(ip, local.port()));
        }
        self.seen_as
    }
}

/// Where a backend's encapsulated reply `packet` (received with `outer` ECN) goes: its exit,
/// through the listener of its inner source, and its payload's length; or why it is dropped.
fn reply(
    listeners: &[Listener],
    packet: &[u8],
    outer: Option<EcnCodepoint>,
) -> Result<(Exit, usize), DataplaneDrop> {
    let inner = qlb_gue::decapsulate(packet).map_err(|_| DataplaneDrop::Decapsulation)?;
    if !is_client(inner.destination) {
        return Err(DataplaneDrop::Decapsulation);
    }
    let (listener, src_ip) = reply_listener(listeners.iter().map(|l| l.local), inner.source)
        .ok_or(DataplaneDrop::UnknownVip)?;
    let exit = Exit {
        via: Source::Listener(listener),
        destination: inner.destination,
        ecn: reply_ecn(outer, inner.ecn),
        src_ip,
    };
    Ok((exit, inner.payload.len()))
}

/// `socket` set up with quinn-udp and registered with `registry` under `token`, with its
/// bound address.
fn register(
    socket: std::net::UdpSocket,
    registry: &Registry,
    token: Token,
) -> io::Result<(UdpSocket, UdpSocketState, SocketAddr)> {
    let mut socket = UdpSocket::from_std(socket);
    let state = UdpSocketState::new((&socket).into())?;
    let local = socket.local_addr()?;
    registry.register(&mut socket, token, Interest::READABLE)?;
    Ok((socket, state, local))
}

/// The socket of `source` among `listeners`, `gue` and `flows`, if it is still there.
#[inline]
fn socket_of<'a>(
    listeners: &'a [Listener],
    gue: &'a [GueSocket],
    flows: &'a FlowTable<FlowKey, Flow>,
    source: Source,
) -> Option<(&'a UdpSocket, &'a UdpSocketState)> {
    match source {
        Source::Listener(listener) => listeners.get(listener).map(|l| (&l.socket, &l.state)),
        Source::Gue(port) => gue.get(port).map(|g| (&g.socket, &g.state)),
        Source::Flow(id) => flows.get(id).map(|f| (&f.socket, &f.state)),
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

#[cfg(test)]
mod tests {
    use mio::Poll;

    use super::*;

    #[test]
    fn tokens_name_the_waker_listeners_gue_ports_and_flow_slots() {
        let poll = Poll::new().expect("poll");
        let pool = Arc::new(Pool::new(quic_lb::Decoder::new(), []).expect("pool"));
        let listeners = vec![
            std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"),
            std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"),
        ];
        let options = DataplaneOptions::default();
        let registry = poll.registry().try_clone().expect("registry");
        let gue = vec![std::net::UdpSocket::bind("127.0.0.1:0").expect("bind")];
        let forwarder =
            Forwarder::new(listeners, gue, registry, pool, &options).expect("forwarder");
        assert!(forwarder.source(WAKER).is_none());
        assert!(matches!(
            forwarder.source(Token(1)),
            Some(Source::Listener(0))
        ));
        assert!(matches!(
            forwarder.source(Token(2)),
            Some(Source::Listener(1))
        ));
        assert!(matches!(forwarder.source(Token(3)), Some(Source::Gue(0))));
        let flow = FlowId::new(5);
        assert!(matches!(
            forwarder.source(forwarder.flow_token(flow)),
            Some(Source::Flow(id)) if id == flow
        ));
    }
}
