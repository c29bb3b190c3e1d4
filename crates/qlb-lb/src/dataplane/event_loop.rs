//! One worker: an event loop on its own thread over its listening sockets (one per listening
//! address), its GUE sockets (`gue` mode) and the upstream sockets of its flows (`proxy`
//! mode), feeding receive batches to its [`Forwarder`].
//!
//! Sockets are registered edge-triggered with one `mio` poll. A socket with an event joins the
//! ready queue; each round serves every ready socket one receive batch (`recvmmsg`, GRO) and
//! requeues it until a receive would block, so that no socket (a flooded listener, a busy
//! flow) starves the others. `gue` mode's encapsulations leave after the first round that
//! drains the listeners (or when the outbox fills), so that they gather across batches. Between rounds the worker takes up a new pool, publishes its
//! stats when asked, and forgets idle flows; it sleeps until the next flow lapses or a waker
//! call.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use super::board::Board;
use super::buffers::{Batch, Buffers};
use super::forward::{Forwarder, Source};
use super::options::DataplaneOptions;

/// Readiness events taken per poll.
const EVENTS: usize = 1024;

pub(crate) struct Worker {
    index: usize,
    board: Arc<Board>,
    poll: Poll,
    events: Events,
    /// Sockets with datagrams waiting (or not yet known to be drained), in serving order.
    ready: VecDeque<Token>,
    buffers: Buffers,
    forwarder: Forwarder,
    pool_version: u64,
    stats_generation: u64,
}

impl Worker {
    /// A worker serving `listeners` (bound sockets, one per listening address) and
    /// `gue_sockets` (one per GUE port, none in proxy mode) with `poll`, whose waker is
    /// registered already.
    pub(crate) fn new(
        index: usize,
        board: Arc<Board>,
        poll: Poll,
        listeners: Vec<std::net::UdpSocket>,
        gue_sockets: Vec<std::net::UdpSocket>,
        options: &DataplaneOptions,
    ) -> io::Result<Self> {
        // The version first: a pool published in between is taken up again, never missed.
        let pool_version = board.pool_version();
        let pool = board.pool();
        let registry = poll.registry().try_clone()?;
        Ok(Self {
            index,
            board,
            poll,
            events: Events::with_capacity(EVENTS),
            ready: VecDeque::new(),
            buffers: Buffers::new(),
            forwarder: Forwarder::new(listeners, gue_sockets, registry, pool, options)?,
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
            board: Arc::clone(&self.board),
            worker: self.index,
        };
        let outcome = self.serve();
        self.forwarder.flush();
        self.board.publish(
            self.index,
            self.board.stats_wanted(),
            self.forwarder.stats(),
        );
        outcome
    }

    fn serve(&mut self) -> io::Result<()> {
        while !self.board.stopping() {
            self.take_up_control();
            let now = Instant::now();
            self.forwarder.expire(now);
            let timeout = if self.ready.is_empty() {
                self.forwarder
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
        let version = self.board.pool_version();
        if version != self.pool_version {
            self.pool_version = version;
            self.forwarder.set_pool(self.board.pool());
            self.board.pool_taken_up(self.index, version);
        }
        let wanted = self.board.stats_wanted();
        if wanted != self.stats_generation {
            self.stats_generation = wanted;
            self.board
                .publish(self.index, wanted, self.forwarder.stats());
        }
    }

    /// One receive batch from every ready socket; then, unless a listener still has datagrams
    /// waiting (the next round takes them), out with what `gue` mode encapsulated.
    fn serve_ready(&mut self) {
        let mut clients_waiting = false;
        for _ in 0..self.ready.len() {
            let Some(token) = self.ready.pop_front() else {
                break;
            };
            if self.serve_batch(token) {
                if let Some(ready) = self.forwarder.ready_flag(token) {
                    *ready = false;
                }
            } else {
                clients_waiting |=
                    matches!(self.forwarder.source(token), Some(Source::Listener(_)));
                self.ready.push_back(token);
            }
        }
        if !clients_waiting {
            self.forwarder.flush();
        }
    }

    /// Receives and forwards one batch from the socket of `token`; true once it is drained
    /// (or gone).
    fn serve_batch(&mut self, token: Token) -> bool {
        let Some(source) = self.forwarder.source(token) else {
            return true;
        };
        let Some((socket, state)) = self.forwarder.socket(source) else {
            return true;
        };
        let received = self.buffers.recv(socket, state);
        let count = match received {
            Ok(count) => count,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return true,
            // A flow's socket is connected: an ICMP port unreachable from its backend comes
            // back as this error, once. Not a failed receive; datagrams may still be queued.
            Err(error) if error.kind() == io::ErrorKind::ConnectionRefused => return false,
            Err(_) => {
                // Nothing to retry: the next datagram brings a new event.
                self.forwarder.receive_error();
                return true;
            }
        };
        let batch = Batch::new(&self.buffers, count);
        let now = Instant::now();
        match source {
            Source::Listener(listener) => self.forwarder.client_batch(listener, batch, now),
            Source::Flow(id) => self.forwarder.backend_batch(id, batch, now),
            Source::Gue(_) => self.forwarder.gue_batch(batch),
        }
        false
    }
}

/// Marks the worker gone on the board when its thread ends, also by a panic.
struct Retire {
    board: Arc<Board>,
    worker: usize,
}

impl Drop for Retire {
    fn drop(&mut self) {
        self.board.retire(self.worker);
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use mio::net::UdpSocket;
    use qlb_router::Pool;
    use quinn_udp::UdpSocketState;

    use super::*;
    use crate::dataplane::flow_table::FlowId;
    use crate::dataplane::segments::datagrams;
    use qlb_gue::source_port_index as port_index;

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
            let batch = Batch::new(&buffers, count);
            received.extend(batch.iter().map(|(meta, data)| {
                let lengths = datagrams(data.len(), meta.stride)
                    .map(|r| r.len())
                    .collect();
                (meta.addr, data.to_vec(), lengths)
            }));
        }
        received
    }

    /// What `socket` receives within `wait`: as [`receive`], for checking that nothing came.
    fn receive_for(
        socket: &UdpSocket,
        state: &UdpSocketState,
        wait: Duration,
    ) -> Vec<(SocketAddr, Vec<u8>, Vec<usize>)> {
        std::thread::sleep(wait);
        let mut buffers = Buffers::new();
        match buffers.recv(socket, state) {
            Ok(count) => Batch::new(&buffers, count)
                .iter()
                .map(|(meta, data)| (meta.addr, data.to_vec(), vec![data.len()]))
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Vec::new(),
            Err(e) => panic!("receive: {e}"),
        }
    }

    /// The octets of every buffer `receive` returned, in order.
    fn joined(received: &[(SocketAddr, Vec<u8>, Vec<usize>)]) -> Vec<u8> {
        received
            .iter()
            .flat_map(|(_, octets, _)| octets.clone())
            .collect()
    }

    /// How many segments the worker's listening socket sends at most in one GSO send.
    fn max_gso_segments(worker: &Worker) -> usize {
        let listener = worker.forwarder.socket(Source::Listener(0));
        listener.map_or(1, |(_, state)| state.max_gso_segments())
    }

    /// A backend socket, a board whose pool has it alone, and a listening socket with its
    /// address.
    fn one_backend() -> (
        UdpSocket,
        UdpSocketState,
        Arc<Board>,
        std::net::UdpSocket,
        SocketAddr,
    ) {
        let (backend, backend_state) = quinn_socket();
        let pool = Pool::new(
            quic_lb::Decoder::new(),
            [qlb_router::Backend::new(
                "b1",
                backend.local_addr().expect("bound"),
            )],
        )
        .expect("pool");
        let board = Arc::new(Board::new(Arc::new(pool), Vec::new()));
        let listener = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let listen = listener.local_addr().expect("bound");
        (backend, backend_state, board, listener, listen)
    }

    /// A worker on `listener` with two GUE sockets on free loopback ports, and their
    /// addresses.
    fn gue_worker(board: Arc<Board>, listener: std::net::UdpSocket) -> (Worker, Vec<SocketAddr>) {
        let gue: Vec<std::net::UdpSocket> = (0..2)
            .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .collect();
        let addrs = gue.iter().map(|s| s.local_addr().expect("bound")).collect();
        let worker = Worker::new(
            0,
            board,
            Poll::new().expect("poll"),
            vec![listener],
            gue,
            &DataplaneOptions::default(),
        )
        .expect("worker");
        (worker, addrs)
    }

    /// Serves the batch on `token` and checks that `client` receives `replies` (lengths and
    /// fills) whole, in order, from `listen`, in one send where GSO allows.
    fn replies_arrive_together(
        worker: &mut Worker,
        token: Token,
        (client, state): (&UdpSocket, &UdpSocketState),
        replies: &[(usize, u8)],
        listen: SocketAddr,
    ) {
        assert!(!worker.serve_batch(token), "a batch came");
        let received = receive(client, state, replies.len());
        let sent = replies.iter().flat_map(|&(len, fill)| datagram(len, fill));
        assert_eq!(
            joined(&received),
            sent.collect::<Vec<_>>(),
            "every octet, in order"
        );
        assert!(received.iter().all(|(from, _, _)| *from == listen));
        if max_gso_segments(worker) >= 3 {
            assert_eq!(received.len(), 1, "one send");
        }
    }

    /// A short-header datagram of `len` octets, filled with `fill`.
    fn datagram(len: usize, fill: u8) -> Vec<u8> {
        let mut datagram = vec![fill; len];
        datagram[0] = 0x40;
        datagram
    }

    /// Marks `token` ready and serves rounds until every socket is drained, as the event loop
    /// does; how many rounds that took.
    fn serve_rounds(worker: &mut Worker, token: Token) -> usize {
        if let Some(ready) = worker.forwarder.ready_flag(token) {
            *ready = true;
        }
        worker.ready.push_back(token);
        let mut rounds = 0;
        while !worker.ready.is_empty() && rounds < 100 {
            worker.serve_ready();
            rounds += 1;
        }
        assert!(worker.ready.is_empty(), "drained in {rounds} rounds");
        rounds
    }

    #[test]
    fn consecutive_datagrams_of_a_flow_leave_together_whole_and_in_order_both_ways() {
        let (backend, backend_state, board, listener, listen) = one_backend();
        let mut worker = Worker::new(
            0,
            board,
            Poll::new().expect("poll"),
            vec![listener],
            Vec::new(),
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
        assert!(!worker.serve_batch(Token(1)), "a batch came");

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
        if max_gso_segments(&worker) >= 4 {
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
        replies_arrive_together(&mut worker, flow_token, (&a, &a_state), &replies, listen);
    }

    #[test]
    fn encapsulated_datagrams_leave_together_and_decapsulated_replies_too() {
        let (backend, backend_state, board, listener, listen) = one_backend();
        let (mut worker, gue_addrs) = gue_worker(board, listener);
        let (a, a_state) = quinn_socket();
        let client = a.local_addr().expect("bound");
        let b = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");

        // One receive batch: a sends a run of four (the last shorter), then b one.
        let from_a = [(1200, 1), (1200, 2), (1200, 3), (700, 4)];
        for (len, fill) in from_a {
            a.send_to(&datagram(len, fill), listen).expect("send");
        }
        b.send_to(&datagram(1200, 5), listen).expect("send");
        std::thread::sleep(Duration::from_millis(50));
        serve_rounds(&mut worker, Token(1));

        let received = receive(&backend, &backend_state, 5);
        let mut inner = Vec::new();
        for (from, octets, lengths) in &received {
            let mut at = 0;
            for len in lengths {
                let packet = qlb_gue::decapsulate(&octets[at..at + len]).expect("GUE");
                assert_eq!(packet.destination, listen, "the VIP");
                inner.push((*from, packet.source, packet.payload.to_vec()));
                at += len;
            }
        }
        let of = |source: SocketAddr| -> Vec<Vec<u8>> {
            inner
                .iter()
                .filter(|(_, from, _)| *from == source)
                .map(|(_, _, payload)| payload.clone())
                .collect()
        };
        let from_a: Vec<Vec<u8>> = from_a
            .into_iter()
            .map(|(len, fill)| datagram(len, fill))
            .collect();
        assert_eq!(of(client), from_a, "a's datagrams unchanged, in order");
        assert_eq!(of(b.local_addr().expect("bound")), [datagram(1200, 5)]);
        let a_port = gue_addrs[port_index(client, 2)];
        assert!(
            inner
                .iter()
                .filter(|(_, source, _)| *source == client)
                .all(|(from, _, _)| *from == a_port)
        );
        if max_gso_segments(&worker) >= 4 {
            let mut shape: Vec<Vec<usize>> = received.iter().map(|(_, _, l)| l.clone()).collect();
            shape.sort();
            assert_eq!(
                shape,
                [vec![1232], vec![1232, 1232, 1232, 732]],
                "one send for a's"
            );
        }

        // Three replies to a, encapsulated and sent one by one, reach a from the VIP in one
        // send.
        let replies = [(1200, 9), (1200, 10), (300, 11)];
        for (len, fill) in replies {
            let mut packet = Vec::new();
            let ecn = qlb_gue::Ecn::NotEct;
            qlb_gue::encapsulate(&mut packet, listen, client, ecn, &datagram(len, fill))
                .expect("fits");
            backend.send_to(&packet, a_port).expect("send");
        }
        std::thread::sleep(Duration::from_millis(50));
        let token = Token(2 + port_index(client, 2));
        replies_arrive_together(&mut worker, token, (&a, &a_state), &replies, listen);
        let stats = worker.forwarder.stats();
        assert_eq!(stats.to_client("b1").packets, 3);
        assert_eq!(
            (stats.flows_created, stats.flows_active),
            (0, 0),
            "no flows"
        );
    }

    #[test]
    fn interleaved_clients_to_one_backend_leave_in_one_send_per_gue_port_across_batches() {
        let (backend, backend_state, board, listener, listen) = one_backend();
        let (mut worker, _) = gue_worker(board, listener);
        // Two clients on different GUE ports.
        let a = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port_of = |s: &std::net::UdpSocket| port_index(s.local_addr().expect("bound"), 2);
        let b = std::iter::repeat_with(|| std::net::UdpSocket::bind("127.0.0.1:0").expect("bind"))
            .find(|b| port_of(b) != port_of(&a))
            .expect("a client on the other port");
        // More than one receive batch holds, interleaved.
        let each = quinn_udp::BATCH_SIZE / 2 + 4;
        for seq in 0..each as u8 {
            a.send_to(&datagram(1200, seq), listen).expect("send");
            b.send_to(&datagram(1200, 100 + seq), listen).expect("send");
        }
        std::thread::sleep(Duration::from_millis(50));

        // The first batch waits in the outbox while the listener has more.
        worker.ready.push_back(Token(1));
        worker.serve_ready();
        let early = receive_for(&backend, &backend_state, Duration::from_millis(100));
        assert!(
            early.is_empty(),
            "nothing leaves before the listener is drained"
        );
        assert!(serve_rounds(&mut worker, Token(1)) >= 1);

        let received = receive(&backend, &backend_state, 2 * each);
        let payloads = |octets: &[u8], lengths: &[usize]| -> Vec<u8> {
            let mut at = 0;
            lengths
                .iter()
                .map(|len| {
                    let packet = qlb_gue::decapsulate(&octets[at..at + len]).expect("GUE");
                    at += len;
                    packet.payload[1]
                })
                .collect()
        };
        let mut sends: Vec<Vec<u8>> = received
            .iter()
            .map(|(_, octets, lengths)| payloads(octets, lengths))
            .collect();
        sends.sort();
        let from_a: Vec<u8> = (0..each as u8).collect();
        let from_b: Vec<u8> = (0..each as u8).map(|seq| 100 + seq).collect();
        if max_gso_segments(&worker) >= each {
            assert_eq!(sends, [from_a, from_b], "one send per client");
        } else {
            let mut all = sends.concat();
            all.sort();
            assert_eq!(all, [from_a, from_b].concat(), "every datagram");
        }
    }
}
