//! The forwarding data plane: worker threads that receive client datagrams on the listening
//! addresses, route each with a [`qlb_router::Router`] and forward it to its backend, in one of
//! two modes:
//!
//! * `proxy` (the default): each datagram goes through a per-flow upstream socket, and the
//!   backends' datagrams come back on it and go on to the client from the address the client
//!   sent to;
//! * `gue` ([`DataplaneOptions::gue`]): each datagram, unchanged, is wrapped in Generic UDP
//!   Encapsulation ([`qlb_gue`]: inner source the client, inner destination the VIP it sent
//!   to) and sent to the backend from one of the worker's GUE sockets, with no flow, socket or
//!   state per client. Backends answer the client directly, or re-encapsulated (inner source
//!   the VIP, inner destination the client) to the GUE socket they last heard the client
//!   from: the data plane decapsulates those and sends them from the VIP's listening socket.
//!
//! # Design
//!
//! * **Workers.** `workers` threads, each with its own socket per listening address, all
//!   bound with SO_REUSEPORT (the kernel spreads clients over them by 4-tuple hash), its own
//!   routers (one per listening address: a router's 4-tuple table is keyed by the client's
//!   half only) and its own flow table. Nothing is shared per datagram: counters are plain
//!   integers a worker alone writes, and the routers' QUIC-LB and Maglev state comes from an
//!   immutable [`Pool`] behind an `Arc`.
//! * **Threads and `mio`, not tokio.** A worker is one single-threaded event loop over one
//!   edge-triggered poll holding its listening sockets and the upstream socket of every flow
//!   (up to [`DataplaneOptions::max_flows`]), so the reply path needs no thread or task per
//!   flow. The loop owns its routers and flows outright (no `Rc<RefCell>`, no locks, no task
//!   wake-ups per socket) and decides the serving order itself: one receive batch per ready
//!   socket per round, so a flooded listener cannot starve established flows' replies. A tokio
//!   current-thread runtime would add a scheduler and per-socket waker machinery to the same
//!   `try_io` calls into `quinn-udp` without buying anything here; the control plane (admin
//!   API, health checks) can run on tokio and talk to the workers through a
//!   [`DataplaneHandle`].
//! * **Batched I/O** through `quinn-udp`: `recvmmsg` with GRO on receive (the batch's
//!   datagrams are routed one by one), `sendmsg` with GSO for consecutive datagrams of a batch
//!   bound for one socket, destination and ECN codepoint (gathered into one buffer), ECN codepoints copied from each received buffer to its
//!   sends, and the client-facing source address (`IP_PKTINFO`) set from the address the
//!   client sent to when a listening address is a wildcard. Datagrams are forwarded whole and
//!   unchanged; a datagram that cannot be sent is dropped and counted, never queued.
//! * **Flows.** A flow is a client address on one listening address, to one backend: its
//!   upstream socket is connected to the backend (bound to the address that reaches it), so
//!   the kernel delivers that backend's replies only, and a client whose connections go to
//!   several backends has a flow for each. Flows are bounded per worker and forgotten after
//!   [`DataplaneOptions::flow_idle_timeout`] without traffic either way. A new flow is
//!   *unconfirmed* until its backend answers; spoofed sources only ever make unconfirmed
//!   flows, so those have their own cap ([`DataplaneOptions::max_unconfirmed_flows`]) and are
//!   evicted, least recently used first, when it or [`DataplaneOptions::max_flows`] is
//!   reached; confirmed flows are never evicted, only forgotten when idle, so a flood of new
//!   client addresses cannot push real clients out. Each flow holds a file descriptor, and
//!   opening one (socket, connect, `quinn-udp` setup with GRO and ECN, registration) costs
//!   about 0.1 ms of the worker's time: the table's bounds also bound what a flood can cost.
//! * **GUE sockets.** Every worker binds each of [`GueOptions::ports`] consecutive ports from
//!   [`GueOptions::bind`] (SO_REUSEPORT), a constant number of file descriptors. A client's
//!   datagrams leave from the port its address hashes to, so a backend's RSS spreads clients
//!   over its receive queues while each flow stays on one (Katran's "RSS-friendly"
//!   encapsulation). Fixed ports mean a restarted data plane has the same addresses, and
//!   replies sent to the old process reach the new one. The encapsulated datagrams of a
//!   receive batch are built back to back in a scratch buffer, grouped by GUE socket and
//!   backend (each client's in their order), so those through one socket to one backend are
//!   one GSO send as they lie, however the clients interleave. Replies are taken from backends of the
//!   pool only, and for the load balancer's own VIPs only (the exact listening address, or a
//!   wildcard listener's port, then sent from the VIP's address); everything else is dropped
//!   and counted.
//! * **Pool changes** ([`Dataplane::set_pool`]) are published to every worker, which takes
//!   the new pool up between batches with [`Router::set_pool`](qlb_router::Router::set_pool):
//!   sockets, flows and the routers' tables stay, so nothing is lost. The call returns once
//!   every worker routes with the new pool.
//! * **Restarts.** A restarted data plane knows no flows, but the router sends established
//!   connections' datagrams to their backends by connection ID, and the client's next
//!   datagram opens a new flow: connections survive without state carried over. In `gue` mode
//!   there is nothing to open: a backend's reply is forwarded before the client sends again.

mod board;
mod buffers;
mod error;
mod event_loop;
mod flow_key;
mod flow_table;
mod forward;
mod gue;
mod kernel;
mod options;
mod outbox;
mod retry;
mod segments;
mod send;
mod socket;
mod stats;
mod worker_counters;

use std::io;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use mio::{Poll, Waker};
use qlb_router::Pool;

use board::Board;
pub use error::DataplaneError;
use event_loop::Worker;
use forward::WAKER;
pub use gue::{GueOptions, MAX_GUE_PORTS};
use kernel::KernelPath;
pub use kernel::{KernelPathOptions, KernelPathState};
pub use options::{DEFAULT_MAX_UNCONFIRMED_FLOWS, DataplaneOptions};
pub use retry::{RetryCounts, RetryOffload, RetryTrigger};
pub use stats::{DataplaneDrop, FlowEviction, FlowRefusal, Stats};

/// How long [`DataplaneHandle::stats`] and [`DataplaneHandle::set_pool`] wait for a worker
/// that does not answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The running data plane: worker threads forwarding between clients and backends until
/// [`Dataplane::shutdown`] (or drop).
///
/// ```
/// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
/// use qlb_router::{Backend, Pool};
/// use std::{net::UdpSocket, num::NonZeroUsize, sync::Arc, time::Duration};
///
/// // A backend, and a pool with it.
/// let backend = UdpSocket::bind("127.0.0.1:0")?;
/// backend.set_read_timeout(Some(Duration::from_secs(10)))?;
/// let pool = Pool::new(quic_lb::Decoder::new(), [Backend::new("b1", backend.local_addr()?)])?;
///
/// let dataplane = Dataplane::start(
///     &["127.0.0.1:0".parse()?],
///     NonZeroUsize::MIN,
///     Arc::new(pool),
///     DataplaneOptions::default(),
/// )?;
/// let lb = dataplane.local_addrs()[0];
///
/// // A client sends a short-header datagram; the backend gets it and answers.
/// let client = UdpSocket::bind("127.0.0.1:0")?;
/// client.set_read_timeout(Some(Duration::from_secs(10)))?;
/// let datagram = [0x40; 32];
/// client.send_to(&datagram, lb)?;
/// let mut buffer = [0; 64];
/// let (len, flow) = backend.recv_from(&mut buffer)?;
/// assert_eq!(&buffer[..len], datagram);
/// backend.send_to(b"reply", flow)?;
///
/// // The reply comes from the load balancer's address.
/// let (len, from) = client.recv_from(&mut buffer)?;
/// assert_eq!((&buffer[..len], from), (&b"reply"[..], lb));
///
/// let stats = dataplane.shutdown()?;
/// assert_eq!(stats.flows_created, 1);
/// assert_eq!(stats.to_client("b1").packets, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the data plane stops it"]
pub struct Dataplane {
    handle: DataplaneHandle,
    local_addrs: Vec<SocketAddr>,
    gue_addrs: Vec<SocketAddr>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl Dataplane {
    /// Binds `workers` sockets to each of `listen` (port 0: a free port that the workers'
    /// sockets share) and starts the workers, routing with `pool`.
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
    /// use std::{num::NonZeroUsize, sync::Arc};
    ///
    /// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
    /// // Two addresses, each on a free port of its own.
    /// let listen = ["127.0.0.1:0".parse()?, "127.0.0.1:0".parse()?];
    /// let workers = NonZeroUsize::new(2).expect("two");
    /// let dataplane = Dataplane::start(&listen, workers, pool, DataplaneOptions::default())?;
    /// let [first, second] = dataplane.local_addrs() else { panic!("two addresses") };
    /// assert_ne!(first.port(), second.port());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn start(
        listen: &[SocketAddr],
        workers: NonZeroUsize,
        pool: Arc<Pool>,
        options: DataplaneOptions,
    ) -> Result<Self, DataplaneError> {
        check_listen(listen)?;
        let gue_addresses = match &options.gue {
            Some(gue) => gue.addresses()?,
            None => Vec::new(),
        };
        let workers = workers.get();
        let mut sockets: Vec<Vec<std::net::UdpSocket>> = (0..workers)
            .map(|_| Vec::with_capacity(listen.len()))
            .collect();
        let mut local_addrs = Vec::with_capacity(listen.len());
        for &address in listen {
            let bind_error = |source| DataplaneError::Bind { address, source };
            let bound = socket::listeners(address, workers).map_err(bind_error)?;
            local_addrs.push(deal(bound, &mut sockets, address).map_err(bind_error)?);
        }
        // Checked on the bound addresses: a listener's port 0 may have become a GUE port.
        if let Some(gue) = &options.gue {
            if let Some(listen) = gue.overlap(&local_addrs).and_then(|i| local_addrs.get(i)) {
                return Err(DataplaneError::GueOverlap {
                    bind: gue.bind,
                    listen: *listen,
                });
            }
        }
        let mut gue_sockets: Vec<Vec<std::net::UdpSocket>> = (0..workers)
            .map(|_| Vec::with_capacity(gue_addresses.len()))
            .collect();
        let mut gue_addrs = Vec::with_capacity(gue_addresses.len());
        for address in gue_addresses {
            let bind_error = |source| DataplaneError::GueBind { address, source };
            let bound = socket::gue_sockets(address, workers).map_err(bind_error)?;
            gue_addrs.push(deal(bound, &mut gue_sockets, address).map_err(bind_error)?);
        }
        let polls = (0..workers)
            .map(|worker| Poll::new().map_err(|source| DataplaneError::Worker { worker, source }))
            .collect::<Result<Vec<_>, _>>()?;
        let wakers = polls
            .iter()
            .enumerate()
            .map(|(worker, poll)| {
                Waker::new(poll.registry(), WAKER)
                    .map_err(|source| DataplaneError::Worker { worker, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let board = Arc::new(Board::new(Arc::clone(&pool), wakers));
        let prepared = polls
            .into_iter()
            .zip(sockets.into_iter().zip(gue_sockets))
            .enumerate()
            .map(|(worker, (poll, (sockets, gue_sockets)))| {
                Worker::new(
                    worker,
                    Arc::clone(&board),
                    poll,
                    sockets,
                    gue_sockets,
                    &options,
                )
                .map_err(|source| DataplaneError::Worker { worker, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut dataplane = Self {
            handle: DataplaneHandle {
                board,
                kernel: None,
                kernel_state: None,
            },
            local_addrs,
            gue_addrs,
            threads: Vec::with_capacity(workers),
        };
        for worker in prepared {
            let index = worker.index();
            let thread = std::thread::Builder::new()
                .name(format!("qlb-lb-worker-{index}"))
                .spawn(move || worker.run())
                // Dropping `dataplane` stops and joins the workers already started.
                .map_err(|source| DataplaneError::Worker {
                    worker: index,
                    source,
                })?;
            dataplane.threads.push(thread);
        }
        // The workers run: what the program passes up from now on is forwarded.
        if let (Some(xdp), Some(gue)) = (&options.xdp, &options.gue) {
            let initials_up = options.retry.is_some();
            let started = KernelPath::start(
                xdp,
                gue,
                options.table_limits,
                initials_up,
                &dataplane.local_addrs,
                &pool,
            );
            dataplane.handle.kernel_state = Some(match &started {
                Ok(_) => KernelPathState::Attached {
                    interface: xdp.interface.clone(),
                },
                Err(error) => {
                    tracing::warn!(
                        interface = %xdp.interface,
                        "the XDP program is not running ({error}): the userspace data plane \
                         forwards every datagram, as in gue mode"
                    );
                    KernelPathState::Failed {
                        interface: xdp.interface.clone(),
                        reason: error.to_string(),
                    }
                }
            });
            dataplane.handle.kernel = started.ok();
        }
        Ok(dataplane)
    }

    /// The bound listening addresses, in the order given to [`Dataplane::start`], with
    /// port 0 resolved.
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
    /// use std::{num::NonZeroUsize, sync::Arc};
    ///
    /// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
    /// let dataplane = Dataplane::start(
    ///     &["127.0.0.1:0".parse()?], NonZeroUsize::MIN, pool, DataplaneOptions::default())?;
    /// assert!(dataplane.local_addrs()[0].ip().is_loopback());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The bound GUE addresses in `gue` mode (one per port, from `gue.bind`'s, port 0
    /// resolved); empty in `proxy` mode. Backends send their encapsulated replies to these.
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions, GueOptions};
    /// use std::{num::NonZeroUsize, sync::Arc};
    ///
    /// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
    /// let gue = GueOptions { bind: "127.0.0.1:0".parse()?, ports: 4 };
    /// let options = DataplaneOptions { gue: Some(gue), ..DataplaneOptions::default() };
    /// let dataplane = Dataplane::start(&["127.0.0.1:0".parse()?], NonZeroUsize::MIN, pool, options)?;
    /// assert_eq!(dataplane.gue_addrs().len(), 4);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn gue_addrs(&self) -> &[SocketAddr] {
        &self.gue_addrs
    }

    /// A handle for the control plane: pool changes and stats, from any thread.
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
    /// use std::{num::NonZeroUsize, sync::Arc};
    ///
    /// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
    /// let dataplane = Dataplane::start(
    ///     &["127.0.0.1:0".parse()?], NonZeroUsize::MIN, pool, DataplaneOptions::default())?;
    /// let handle = dataplane.handle();
    /// std::thread::spawn(move || handle.stats().flows_active).join().expect("stats");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn handle(&self) -> DataplaneHandle {
        self.handle.clone()
    }

    /// Replaces the pool; see [`DataplaneHandle::set_pool`].
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
    /// use std::{num::NonZeroUsize, sync::Arc};
    ///
    /// let empty = || Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), []).expect("pool"));
    /// let dataplane = Dataplane::start(
    ///     &["127.0.0.1:0".parse()?], NonZeroUsize::MIN, empty(), DataplaneOptions::default())?;
    /// let next = empty();
    /// dataplane.set_pool(next.clone());
    /// assert!(Arc::ptr_eq(&dataplane.pool(), &next));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_pool(&self, pool: Arc<Pool>) {
        self.handle.set_pool(pool);
    }

    /// The current pool; see [`DataplaneHandle::pool`].
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
    /// use std::{num::NonZeroUsize, sync::Arc};
    ///
    /// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
    /// let dataplane = Dataplane::start(
    ///     &["127.0.0.1:0".parse()?], NonZeroUsize::MIN, pool.clone(), DataplaneOptions::default())?;
    /// assert!(Arc::ptr_eq(&dataplane.pool(), &pool));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool(&self) -> Arc<Pool> {
        self.handle.pool()
    }

    /// Fresh stats from every worker; see [`DataplaneHandle::stats`].
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
    /// use std::{num::NonZeroUsize, sync::Arc};
    ///
    /// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
    /// let dataplane = Dataplane::start(
    ///     &["127.0.0.1:0".parse()?], NonZeroUsize::MIN, pool, DataplaneOptions::default())?;
    /// assert_eq!(dataplane.stats().router.decisions(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.handle.stats()
    }

    /// Stops the workers, closes every socket, and returns the final stats; fails if a worker
    /// had failed or panicked. Dropping a `Dataplane` stops it too, without the report.
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
    /// use std::{num::NonZeroUsize, sync::Arc};
    ///
    /// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
    /// let dataplane = Dataplane::start(
    ///     &["127.0.0.1:0".parse()?], NonZeroUsize::MIN, pool, DataplaneOptions::default())?;
    /// let address = dataplane.local_addrs()[0];
    /// assert_eq!(dataplane.shutdown()?.flows_active, 0);
    /// // The address is free again.
    /// std::net::UdpSocket::bind(address)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(mut self) -> Result<Stats, DataplaneError> {
        self.stop_and_join()?;
        Ok(self
            .handle
            .with_kernel(self.handle.board.stats(Duration::ZERO)))
    }

    /// Stops every worker and waits for its thread; the first failure is reported.
    fn stop_and_join(&mut self) -> Result<(), DataplaneError> {
        // The kernel path first: a stopped data plane forwards nothing, in the kernel either.
        if let Some(kernel) = &self.handle.kernel {
            kernel.stop();
        }
        self.handle.board.stop();
        let mut outcome = Ok(());
        for (worker, thread) in self.threads.drain(..).enumerate() {
            let joined = match thread.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(DataplaneError::Worker { worker, source }),
                Err(_) => Err(DataplaneError::WorkerPanicked { worker }),
            };
            outcome = outcome.and(joined);
        }
        outcome
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        // Failures were the caller's to collect with `shutdown`.
        self.stop_and_join().ok();
    }
}

/// A cloneable handle to a running [`Dataplane`] for the control plane (reloads, health
/// checks, the admin API): it publishes pools and collects stats, from any thread. After
/// the data plane has stopped, pools go nowhere and stats are the final ones.
///
/// ```
/// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
/// use std::{num::NonZeroUsize, sync::Arc};
///
/// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
/// let dataplane = Dataplane::start(
///     &["127.0.0.1:0".parse()?], NonZeroUsize::MIN, pool, DataplaneOptions::default())?;
/// let handle = dataplane.handle();
/// dataplane.shutdown()?;
/// assert_eq!(handle.stats().flows_created, 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct DataplaneHandle {
    board: Arc<Board>,
    /// `xdp` mode's program, when it runs.
    kernel: Option<Arc<KernelPath>>,
    kernel_state: Option<KernelPathState>,
}

impl DataplaneHandle {
    /// Replaces the pool (after a reload or a health change). Every worker takes it up
    /// between two receive batches; sockets, flows and routing tables stay, so no datagram
    /// and no flow is lost. Returns once every worker routes with the new pool (so a datagram
    /// that arrives afterwards is routed with it), normally within a batch; a worker that does
    /// not answer within 2 s is not waited for further. It blocks meanwhile: from async code,
    /// call it where blocking is allowed (`spawn_blocking`).
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
    /// use qlb_router::{Backend, Pool};
    /// use std::{num::NonZeroUsize, sync::Arc};
    ///
    /// let empty = Arc::new(Pool::new(quic_lb::Decoder::new(), [])?);
    /// let dataplane = Dataplane::start(
    ///     &["127.0.0.1:0".parse()?], NonZeroUsize::MIN, empty, DataplaneOptions::default())?;
    /// let bigger = Pool::new(quic_lb::Decoder::new(), [Backend::new("a", "192.0.2.1:443".parse()?)])?;
    /// dataplane.handle().set_pool(Arc::new(bigger));
    /// assert_eq!(dataplane.pool().backends().len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_pool(&self, pool: Arc<Pool>) {
        self.board.set_pool(Arc::clone(&pool), ANSWER_TIMEOUT);
        if let Some(kernel) = &self.kernel {
            if let Err(error) = kernel.set_pool(&pool) {
                // The program keeps deciding with the pool it had: as a bad reload.
                tracing::warn!(
                    interface = kernel.interface(),
                    "the XDP program kept its pool: {error}"
                );
            }
        }
    }

    /// `xdp` mode: whether the XDP program runs, and if not why; `None` in other modes.
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
    /// use std::{num::NonZeroUsize, sync::Arc};
    ///
    /// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
    /// let dataplane = Dataplane::start(
    ///     &["127.0.0.1:0".parse()?], NonZeroUsize::MIN, pool, DataplaneOptions::default())?;
    /// assert!(dataplane.handle().kernel_path().is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kernel_path(&self) -> Option<&KernelPathState> {
        self.kernel_state.as_ref()
    }

    /// The pool last given (workers may take a batch to take it up).
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
    /// use std::{num::NonZeroUsize, sync::Arc};
    ///
    /// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
    /// let dataplane = Dataplane::start(
    ///     &["127.0.0.1:0".parse()?], NonZeroUsize::MIN, pool.clone(), DataplaneOptions::default())?;
    /// assert!(Arc::ptr_eq(&dataplane.handle().pool(), &pool));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pool(&self) -> Arc<Pool> {
        self.board.pool()
    }

    /// Fresh stats, summed over workers: every worker publishes its counters between two
    /// batches when asked, so everything a worker had forwarded before the call is in them.
    /// A worker that does not answer within 2 s contributes its last published stats.
    ///
    /// ```
    /// use qlb_lb::dataplane::{Dataplane, DataplaneOptions};
    /// use std::{net::UdpSocket, num::NonZeroUsize, sync::Arc};
    ///
    /// let pool = Arc::new(qlb_router::Pool::new(quic_lb::Decoder::new(), [])?);
    /// let dataplane = Dataplane::start(
    ///     &["127.0.0.1:0".parse()?], NonZeroUsize::MIN, pool, DataplaneOptions::default())?;
    /// // An empty datagram: the router drops it.
    /// UdpSocket::bind("127.0.0.1:0")?.send_to(&[], dataplane.local_addrs()[0])?;
    /// let handle = dataplane.handle();
    /// while handle.stats().router.dropped(qlb_router::DropReason::Empty) == 0 {
    ///     std::thread::sleep(std::time::Duration::from_millis(5));
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.with_kernel(self.board.stats(ANSWER_TIMEOUT))
    }

    /// `stats` with the XDP program's counters, in `xdp` mode.
    fn with_kernel(&self, mut stats: Stats) -> Stats {
        stats.xdp = self
            .kernel
            .as_ref()
            .and_then(|kernel| match kernel.counters() {
                Ok(counters) => Some(counters),
                Err(error) => {
                    tracing::warn!(interface = kernel.interface(), "the XDP counters: {error}");
                    None
                }
            });
        stats
    }
}

/// Hands one of `bound` (sockets sharing `address`) to each worker's list; returns the bound
/// address, port 0 resolved.
fn deal(
    bound: Vec<std::net::UdpSocket>,
    workers: &mut [Vec<std::net::UdpSocket>],
    address: SocketAddr,
) -> io::Result<SocketAddr> {
    let local = match bound.first() {
        Some(first) => first.local_addr()?,
        None => address,
    };
    for (worker, socket) in workers.iter_mut().zip(bound) {
        worker.push(socket);
    }
    Ok(local)
}

fn check_listen(listen: &[SocketAddr]) -> Result<(), DataplaneError> {
    if listen.is_empty() {
        return Err(DataplaneError::NoListenAddress);
    }
    // Port 0 is a different free port each time it is listed.
    for (position, address) in listen.iter().enumerate().filter(|(_, a)| a.port() != 0) {
        if listen
            .get(..position)
            .is_some_and(|before| before.contains(address))
        {
            return Err(DataplaneError::DuplicateListenAddress { address: *address });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_must_be_given_once_each() {
        let a: SocketAddr = "127.0.0.1:4433".parse().expect("addr");
        let b: SocketAddr = "[::1]:4433".parse().expect("addr");
        let any: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        assert!(check_listen(&[a, b, any, any]).is_ok());
        assert!(matches!(
            check_listen(&[]),
            Err(DataplaneError::NoListenAddress)
        ));
        assert!(matches!(
            check_listen(&[a, b, a]),
            Err(DataplaneError::DuplicateListenAddress { address }) if address == a
        ));
    }
}
