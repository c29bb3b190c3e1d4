//! The traffic: QUIC-shaped short-header datagrams with routable QUIC-LB connection IDs, the
//! generator that sends them (flat out, or at a fixed rate with a send time in each), and the
//! sinks (the backends) that count them, check them, and time them.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use quinn_udp::{Transmit, UdpSocketState};

use crate::BenchResult;

/// How often the sink thread looks at its stop flag when no datagram comes.
const SINK_POLL: Duration = Duration::from_millis(20);
/// Sends made flat out between two looks at the stop flag.
const SENDS_PER_LOOK: usize = 64;
/// The largest UDP payload over IPv4: the most one GSO burst carries.
const MAX_UDP_PAYLOAD: usize = 65_507;
/// At a fixed rate, a generator that fell this far behind (descheduled) starts its schedule
/// afresh instead of catching up in one burst.
const MAX_BACKLOG: u64 = 1000;

/// Where the fields of a datagram are: the first octet (short header, fixed bit), the
/// DCID, the send time (ns since the run's epoch, little-endian), the index of the backend
/// the DCID names, then padding to `size`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub size: usize,
    pub cid_len: usize,
}

impl Layout {
    fn time_at(self) -> usize {
        1 + self.cid_len
    }

    fn backend_at(self) -> usize {
        self.time_at() + 8
    }

    /// A datagram with DCID `cid` naming backend `backend`.
    pub(crate) fn datagram(self, cid: &[u8], backend: usize) -> Vec<u8> {
        let mut datagram = vec![0x41];
        datagram.extend_from_slice(cid);
        datagram.extend_from_slice(&0u64.to_le_bytes());
        datagram.extend_from_slice(&u16::try_from(backend).unwrap_or(u16::MAX).to_le_bytes());
        datagram.resize(self.size.max(datagram.len()), 0x5a);
        datagram
    }

    fn stamp(self, datagram: &mut [u8], nanos: u64) {
        if let Some(field) = datagram.get_mut(self.time_at()..self.backend_at()) {
            field.copy_from_slice(&nanos.to_le_bytes());
        }
    }

    fn sent_at(self, datagram: &[u8]) -> Option<u64> {
        let field = datagram.get(self.time_at()..self.backend_at())?;
        Some(u64::from_le_bytes(field.try_into().ok()?))
    }

    fn backend(self, datagram: &[u8]) -> Option<usize> {
        let field = datagram.get(self.backend_at()..self.backend_at() + 2)?;
        Some(usize::from(u16::from_le_bytes(field.try_into().ok()?)))
    }
}

/// Nanoseconds since `epoch` (the run's clock, shared by generator and sinks).
fn nanos_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// One client flow: its own socket (so its own source port), connected to where it sends,
/// and its datagram; flat out, it may send bursts of copies of it with GSO.
pub(crate) struct ClientFlow {
    socket: UdpSocket,
    datagram: Vec<u8>,
    to: SocketAddr,
    /// Datagrams per flat-out send, and quinn-udp for GSO when there are several.
    burst: usize,
    gso: UdpSocketState,
}

impl ClientFlow {
    pub(crate) fn open(to: SocketAddr, datagram: Vec<u8>, burst: usize) -> io::Result<Self> {
        let socket = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        socket.connect(to)?;
        let gso = UdpSocketState::new((&socket).into())?;
        // GSO takes at most its segment limit, and at most one UDP payload's worth.
        let fits = MAX_UDP_PAYLOAD / datagram.len().max(1);
        let burst = burst.min(gso.max_gso_segments()).min(fits).max(1);
        Ok(Self {
            socket,
            datagram,
            to,
            burst,
            gso,
        })
    }

    /// Sends a burst of copies of the flow's datagram in one GSO send; how many left.
    fn send_burst(&self, octets: &[u8]) -> u64 {
        if self.burst == 1 {
            return u64::from(self.send());
        }
        let transmit = Transmit {
            destination: self.to,
            ecn: None,
            contents: octets,
            segment_size: Some(self.datagram.len()),
            src_ip: None,
        };
        match self.gso.try_send((&self.socket).into(), &transmit) {
            Ok(()) => self.burst as u64,
            Err(_) => 0,
        }
    }

    /// Sends the flow's datagram; false if it could not leave.
    pub(crate) fn send(&self) -> bool {
        // Refusals (ICMP from a forwarder not yet or no longer there) and a full send
        // buffer only lose the datagram: the sinks count what arrives.
        self.socket.send(&self.datagram).is_ok()
    }
}

/// How the generator sends.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pace {
    /// As fast as it can, one send per flow in turn (a datagram, or a GSO burst).
    FlatOut,
    /// This many datagrams per second over all flows, each stamped with its send time.
    Rate(u64),
}

/// Sends from `flows` with `pace` until `stop`, counting what leaves in `sent`.
pub(crate) fn generate(
    flows: &mut [ClientFlow],
    pace: Pace,
    layout: Layout,
    epoch: Instant,
    sent: &AtomicU64,
    stop: &AtomicBool,
) {
    if flows.is_empty() {
        return;
    }
    let mut next = 0;
    match pace {
        Pace::FlatOut => {
            let bursts: Vec<Vec<u8>> = flows.iter().map(|f| f.datagram.repeat(f.burst)).collect();
            while !stop.load(Ordering::Relaxed) {
                let mut count = 0;
                for _ in 0..SENDS_PER_LOOK {
                    if let (Some(flow), Some(burst)) = (flows.get(next), bursts.get(next)) {
                        count += flow.send_burst(burst);
                    }
                    next = (next + 1) % flows.len();
                }
                sent.fetch_add(count, Ordering::Relaxed);
            }
        }
        Pace::Rate(rate) => {
            let interval = Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap_or(1);
            let mut start = Instant::now();
            let mut scheduled = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = start + interval * u32::try_from(scheduled).unwrap_or(u32::MAX);
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                    continue;
                }
                if (now - due) > interval * u32::try_from(MAX_BACKLOG).unwrap_or(1) {
                    (start, scheduled) = (now, 0);
                }
                if let Some(flow) = flows.get_mut(next) {
                    layout.stamp(&mut flow.datagram, nanos_since(epoch));
                    sent.fetch_add(u64::from(flow.send()), Ordering::Relaxed);
                }
                next = (next + 1) % flows.len();
                scheduled += 1;
            }
        }
    }
}

/// What the sinks have seen so far.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Tally {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams of the wrong length (cut or merged on the way).
    pub malformed: u64,
    /// Datagrams at another backend than their DCID names.
    pub misrouted: u64,
}

#[derive(Default)]
struct Shared {
    received: AtomicU64,
    malformed: AtomicU64,
    misrouted: AtomicU64,
    /// Latencies (ns) are recorded while this is set.
    recording: AtomicBool,
    /// The sinks leave their sockets alone while this is set.
    paused: AtomicBool,
    latencies: Mutex<Vec<u64>>,
    stop: AtomicBool,
}

/// The backends: UDP sockets on loopback, served by one thread, counting every datagram and
/// timing those stamped with a send time while recording. They do not enable GRO, so that
/// every datagram is a datagram of its own at the socket (and in the kernel's counts), and a
/// forwarder's GSO send is split on its way in, at the forwarder's expense, as a NIC without
/// segmentation offload would have it.
pub(crate) struct Sinks {
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Sinks {
    /// `count` sinks expecting datagrams of `layout`; `on_start` runs first on their thread
    /// (to pin it).
    pub(crate) fn start(
        count: usize,
        layout: Layout,
        epoch: Instant,
        on_start: impl FnOnce() + Send + 'static,
    ) -> BenchResult<Self> {
        let sockets = (0..count)
            .map(|_| UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))))
            .collect::<io::Result<Vec<_>>>()?;
        let addrs = sockets
            .iter()
            .map(UdpSocket::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("sinks".into())
                .spawn(move || {
                    on_start();
                    serve_sinks(sockets, layout, epoch, &shared)
                })?
        };
        Ok(Self {
            addrs,
            shared,
            thread: Some(thread),
        })
    }

    pub(crate) fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    pub(crate) fn tally(&self) -> Tally {
        Tally {
            received: self.shared.received.load(Ordering::Relaxed),
            malformed: self.shared.malformed.load(Ordering::Relaxed),
            misrouted: self.shared.misrouted.load(Ordering::Relaxed),
        }
    }

    /// Stops (`true`) or resumes reading. A sink that does not read takes no CPU from the
    /// generator at saturation, and the kernel counts every datagram that reaches it anyway
    /// (see [`Sinks::arrived`]).
    pub(crate) fn pause(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::Relaxed);
    }

    /// Datagrams the kernel dropped at the sinks' full sockets so far (`drops` of
    /// `/proc/net/udp`). While the sinks are paused their sockets stay full, so every
    /// datagram that reaches them is dropped and counted there: the difference over a
    /// window is what arrived in it.
    pub(crate) fn arrived(&self) -> BenchResult<u64> {
        let table = std::fs::read_to_string("/proc/net/udp")?;
        let ports: Vec<String> = self
            .addrs
            .iter()
            .map(|a| format!("0100007F:{:04X}", a.port()))
            .collect();
        let mut drops = 0;
        for line in table.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields
                .get(1)
                .is_some_and(|local| ports.iter().any(|p| p == local))
            {
                drops += fields
                    .last()
                    .and_then(|d| d.parse::<u64>().ok())
                    .ok_or("unreadable /proc/net/udp")?;
            }
        }
        Ok(drops)
    }

    /// Starts recording latencies afresh.
    pub(crate) fn record(&self) {
        lock(&self.shared.latencies).clear();
        self.shared.recording.store(true, Ordering::Relaxed);
    }

    /// Stops recording and returns the latencies recorded (ns), sorted.
    pub(crate) fn recorded(&self) -> Vec<u64> {
        self.shared.recording.store(false, Ordering::Relaxed);
        let mut latencies = std::mem::take(&mut *lock(&self.shared.latencies));
        latencies.sort_unstable();
        latencies
    }

    /// Stops the sink thread; fails if it had failed.
    pub(crate) fn stop(mut self) -> BenchResult {
        self.shared.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(outcome)) => Ok(outcome?),
            Some(Err(_)) => Err("the sink thread panicked".into()),
            None => Ok(()),
        }
    }
}

fn serve_sinks(
    sockets: Vec<UdpSocket>,
    layout: Layout,
    epoch: Instant,
    shared: &Shared,
) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut sinks = Vec::with_capacity(sockets.len());
    for (index, socket) in sockets.into_iter().enumerate() {
        socket.set_nonblocking(true)?;
        let mut socket = mio::net::UdpSocket::from_std(socket);
        poll.registry()
            .register(&mut socket, Token(index), Interest::READABLE)?;
        sinks.push(socket);
    }
    let mut buffer = vec![0u8; 1 << 16];
    let mut events = Events::with_capacity(64);
    let mut latencies = Vec::new();
    let mut was_paused = false;
    while !shared.stop.load(Ordering::Relaxed) {
        if shared.paused.load(Ordering::Relaxed) {
            was_paused = true;
            std::thread::sleep(SINK_POLL);
            continue;
        }
        match poll.poll(&mut events, Some(SINK_POLL)) {
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            other => other?,
        }
        // After a pause every socket is drained once: its edge may have passed meanwhile.
        let ready: Vec<usize> = if std::mem::take(&mut was_paused) {
            (0..sinks.len()).collect()
        } else {
            events.iter().map(|e| e.token().0).collect()
        };
        for index in ready {
            let Some(socket) = sinks.get(index) else {
                continue;
            };
            let mut tally = Tally::default();
            // Edge-triggered: drain the socket.
            loop {
                let len = match socket.recv(&mut buffer) {
                    Ok(len) => len,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => break,
                    Err(error) => return Err(error),
                };
                let mut datagram = buffer.get(..len).unwrap_or_default();
                tally.received += 1;
                if len != layout.size {
                    // From qlb in GUE mode: the datagram is inside.
                    match qlb_gue::decapsulate(datagram) {
                        Ok(inner) if inner.payload.len() == layout.size => {
                            datagram = inner.payload;
                        }
                        _ => {
                            tally.malformed += 1;
                            continue;
                        }
                    }
                }
                if layout.backend(datagram) != Some(index) {
                    tally.misrouted += 1;
                }
                if shared.recording.load(Ordering::Relaxed) {
                    if let Some(sent) = layout.sent_at(datagram) {
                        latencies.push(nanos_since(epoch).saturating_sub(sent));
                    }
                }
            }
            shared.received.fetch_add(tally.received, Ordering::Relaxed);
            shared
                .malformed
                .fetch_add(tally.malformed, Ordering::Relaxed);
            shared
                .misrouted
                .fetch_add(tally.misrouted, Ordering::Relaxed);
            if !latencies.is_empty() {
                lock(&shared.latencies).append(&mut latencies);
            }
        }
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
