//! A UDP relay in front of two load balancers that sends each client's datagrams to them in
//! turn, as if an ECMP change moved the client's flow from one to the other and back on every
//! datagram, and relays their replies back to the client from its own address. New clients
//! start on each load balancer in turn, so both see handshakes begin. Given one load
//! balancer twice it is a plain relay; either way it can cut a client's address off, as a
//! path that stops working, while the client's other addresses still pass.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::TestResult;

/// Datagrams each client sent through each of the two targets.
type Counts = Arc<Mutex<HashMap<SocketAddr, Sent>>>;

/// Client addresses whose datagrams, both ways, are dropped.
type Cut = Arc<Mutex<HashSet<SocketAddr>>>;

/// What one client sent through the relay.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sent {
    /// The target its first datagram went to: where its handshake began.
    pub first: usize,
    /// Datagrams through each target.
    pub datagrams: [u64; 2],
}

/// The running relay, on its own thread; stopped on drop.
pub(crate) struct EcmpRelay {
    /// Where clients send.
    pub addr: SocketAddr,
    counts: Counts,
    cut: Cut,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EcmpRelay {
    /// Listens on a free loopback port and alternates every client's datagrams between
    /// `targets`: the first client's first datagram (an Initial) to `targets[0]`, the second
    /// client's to `targets[1]`, and so on.
    pub(crate) fn start(targets: [SocketAddr; 2]) -> TestResult<Self> {
        let front = std::net::UdpSocket::bind("127.0.0.1:0")?;
        front.set_nonblocking(true)?;
        let addr = front.local_addr()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let counts = Counts::default();
        let cut = Cut::default();
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::spawn({
            let (counts, cut) = (counts.clone(), cut.clone());
            move || {
                runtime.block_on(async move {
                    let Ok(front) = UdpSocket::from_std(front) else {
                        return;
                    };
                    tokio::select! {
                        _ = stopped => {}
                        () = relay(Arc::new(front), targets, counts, cut) => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            counts,
            cut,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// What every client sent so far.
    pub(crate) fn clients(&self) -> Vec<Sent> {
        lock(&self.counts).values().copied().collect()
    }

    /// The addresses clients have sent from so far.
    pub(crate) fn client_addrs(&self) -> Vec<SocketAddr> {
        lock(&self.counts).keys().copied().collect()
    }

    /// Drops every datagram from and to `client` from now on.
    pub(crate) fn cut_off(&self, client: SocketAddr) {
        lock(&self.cut).insert(client);
    }
}

impl Drop for EcmpRelay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Each client gets an upstream socket of its own (the load balancers see one client address
/// per client, whichever of them a datagram goes through) and a task relaying what comes back
/// on it.
async fn relay(front: Arc<UdpSocket>, targets: [SocketAddr; 2], counts: Counts, cut: Cut) {
    // Per client: its upstream socket and the target its first datagram went to.
    let mut upstreams: HashMap<SocketAddr, (Arc<UdpSocket>, usize)> = HashMap::new();
    let mut replies = JoinSet::new();
    let mut buffer = vec![0; 65_535];
    loop {
        let Ok((len, client)) = front.recv_from(&mut buffer).await else {
            continue;
        };
        if lock(&cut).contains(&client) {
            continue;
        }
        let clients = upstreams.len();
        let (upstream, first) = match upstreams.entry(client) {
            Entry::Occupied(entry) => entry.get().clone(),
            Entry::Vacant(entry) => {
                let Ok(socket) = UdpSocket::bind("127.0.0.1:0").await else {
                    continue;
                };
                let socket = Arc::new(socket);
                replies.spawn(relay_replies(
                    socket.clone(),
                    front.clone(),
                    client,
                    cut.clone(),
                ));
                entry.insert((socket, clients % 2)).clone()
            }
        };
        let target = {
            let mut counts = lock(&counts);
            let sent = counts.entry(client).or_insert(Sent {
                first,
                datagrams: [0; 2],
            });
            let [a, b] = sent.datagrams;
            let target = usize::try_from(a + b).map_or(0, |n| (first + n) % 2);
            sent.datagrams[target] += 1;
            target
        };
        // A datagram the kernel refuses is lost, as on a real network.
        let _ = upstream.send_to(&buffer[..len], targets[target]).await;
    }
}

async fn relay_replies(
    upstream: Arc<UdpSocket>,
    front: Arc<UdpSocket>,
    client: SocketAddr,
    cut: Cut,
) {
    let mut buffer = vec![0; 65_535];
    loop {
        if let Ok((len, _)) = upstream.recv_from(&mut buffer).await {
            if !lock(&cut).contains(&client) {
                let _ = front.send_to(&buffer[..len], client).await;
            }
        }
    }
}

fn lock<T>(shared: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}
