//! The socket quinn's endpoint runs on in GUE mode: the plain socket and the GUE socket
//! received from as one, and each transmit sent out of the exit [`choose`] picks.

use std::cell::RefCell;
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use quinn::udp::{RecvMeta, Transmit};

use super::direct::DirectSockets;
use super::ecn;
use super::exit::{Exit, GueReturn, choose};
use super::io::{Datagrams, UdpIo};
use super::poller::{Exits, Writable};
use super::receive::Batch;
use super::return_map::{ReturnMap, Route};
use super::sources::GueSources;
use super::transmit::encapsulate_segments;
use crate::Metrics;

thread_local! {
    /// Where replies are encapsulated: one buffer per thread, reused, since quinn's
    /// connection tasks send from several threads at once.
    static ENCAPSULATED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The plain socket and the GUE socket as one [`quinn::AsyncUdpSocket`].
#[derive(Debug)]
pub(crate) struct GueSocket {
    plain: Arc<UdpIo>,
    /// The plain socket's address, unless it is a wildcard.
    plain_ip: Option<IpAddr>,
    gue: Arc<UdpIo>,
    ret: GueReturn,
    /// The load balancers GUE is accepted from.
    sources: GueSources,
    direct: DirectSockets,
    routes: Mutex<ReturnMap>,
    batch: Mutex<Batch>,
    /// Which socket is read first next time, alternating so that neither starves the other.
    gue_first: AtomicBool,
    metrics: Metrics,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Receive calls one poll of the GUE socket makes at most before it lets the endpoint's
/// task do other work, when every datagram received is dropped.
const RECEIVES_PER_POLL: usize = 16;

/// What one socket's receive gave.
enum Received {
    Some(usize),
    /// Nothing; the waker is registered.
    Nothing,
}

impl GueSocket {
    /// Must run inside a tokio runtime.
    pub(crate) fn new(
        plain: std::net::UdpSocket,
        gue: std::net::UdpSocket,
        ret: GueReturn,
        sources: GueSources,
        metrics: Metrics,
    ) -> io::Result<Self> {
        let plain = UdpIo::new(plain)?;
        let plain_ip = Some(plain.local_addr()?.ip()).filter(|ip| !ip.is_unspecified());
        Ok(Self {
            plain: Arc::new(plain),
            plain_ip,
            gue: Arc::new(UdpIo::new(gue)?),
            ret,
            sources,
            direct: DirectSockets::new(),
            routes: Mutex::new(ReturnMap::default()),
            batch: Mutex::new(Batch::default()),
            gue_first: AtomicBool::new(false),
            metrics,
        })
    }

    /// The GUE socket's address.
    pub(crate) fn gue_addr(&self) -> io::Result<SocketAddr> {
        self.gue.local_addr()
    }

    fn poll_plain(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Received {
        match self.plain.poll_recv(cx, bufs, meta) {
            Poll::Ready(Ok(count)) => Received::Some(count),
            Poll::Ready(Err(error)) => retry_soon(cx, "plain", &error),
            Poll::Pending => Received::Nothing,
        }
    }

    /// Hands quinn decapsulated datagrams, receiving more first if none wait.
    fn poll_gue(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Received {
        let mut batch = lock(&self.batch);
        for _ in 0..RECEIVES_PER_POLL {
            if batch.has_waiting() {
                let delivered =
                    batch.deliver(bufs, meta, |reason| self.metrics.gue_dropped(reason));
                if delivered > 0 {
                    let datagrams = meta
                        .iter()
                        .take(delivered)
                        .map(|meta| meta.len.div_ceil(meta.stride.max(1)))
                        .sum();
                    self.metrics.gue_received(datagrams);
                    return Received::Some(delivered);
                }
                // Everything left was too long for quinn's buffers.
            }
            let filled = match batch.receive(|bufs, metas| self.gue.poll_recv(cx, bufs, metas)) {
                Poll::Ready(Ok(filled)) => filled,
                Poll::Ready(Err(error)) => return retry_soon(cx, "GUE", &error),
                Poll::Pending => return Received::Nothing,
            };
            let mut routes = lock(&self.routes);
            batch.decode(
                filled,
                &self.sources,
                |client, route| {
                    let forgotten = routes.learn(client, route);
                    if forgotten > 0 {
                        self.metrics.gue_routes_forgotten(forgotten);
                    }
                },
                |reason| self.metrics.gue_dropped(reason),
            );
        }
        // A flood of datagrams that all get dropped must not hold the endpoint's task.
        cx.waker().wake_by_ref();
        Received::Nothing
    }

    /// Encapsulates `transmit` back to the load balancer of `route`.
    fn send_through_lb(&self, transmit: &Transmit<'_>, route: Route) -> io::Result<()> {
        ENCAPSULATED.with_borrow_mut(|out| {
            out.clear();
            let encapsulated = encapsulate_segments(
                out,
                route.vip,
                transmit.destination,
                ecn::from_quinn(transmit.ecn),
                transmit.contents,
                transmit.segment_size.unwrap_or(transmit.contents.len()),
            );
            let stride = match encapsulated {
                Ok(stride) => stride,
                Err(error) => {
                    tracing::debug!(%error, destination = %transmit.destination, "cannot encapsulate a reply");
                    self.metrics.gue_send_dropped("encapsulation");
                    return Ok(());
                }
            };
            self.gue.send(Datagrams {
                destination: route.lb,
                // The outer header copies the inner ECN (RFC 6040's normal mode).
                ecn: transmit.ecn,
                src_ip: route.local,
                contents: out,
                stride,
            })?;
            self.metrics.gue_sent("through_lb", out.len().div_ceil(stride));
            Ok(())
        })
    }

    /// Sends `transmit` unchanged from the socket bound to `vip`.
    fn send_direct(&self, transmit: &Transmit<'_>, vip: SocketAddr) -> io::Result<()> {
        let socket = match self.direct.get(vip) {
            Ok(socket) => socket,
            Err(_) => {
                self.metrics.gue_send_dropped("direct_bind");
                return Ok(());
            }
        };
        let datagrams = datagrams(transmit);
        socket.send(Datagrams {
            // Bound to the VIP: the source is right without asking for one.
            src_ip: None,
            ..datagrams
        })?;
        self.metrics.gue_sent(
            "direct",
            transmit.contents.len().div_ceil(datagrams.stride.max(1)),
        );
        Ok(())
    }
}

/// `transmit` as [`Datagrams`].
fn datagrams<'a>(transmit: &Transmit<'a>) -> Datagrams<'a> {
    Datagrams {
        destination: transmit.destination,
        ecn: transmit.ecn,
        src_ip: transmit.src_ip,
        contents: transmit.contents,
        stride: transmit.segment_size.unwrap_or(transmit.contents.len()),
    }
}

/// A receive error (an ICMP error reported late, say) ends nothing: retry on the next turn
/// of the endpoint, like quinn's own socket (which retries at once).
fn retry_soon(cx: &mut Context<'_>, socket: &str, error: &io::Error) -> Received {
    tracing::debug!(%error, "receiving on the {socket} socket");
    cx.waker().wake_by_ref();
    Received::Nothing
}

impl quinn::AsyncUdpSocket for GueSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn quinn::UdpPoller>> {
        Box::pin(Writable::new(self))
    }

    fn try_send(&self, transmit: &Transmit<'_>) -> io::Result<()> {
        let exit = choose(
            &lock(&self.routes),
            self.ret,
            transmit.destination,
            transmit.src_ip,
            self.plain_ip,
        );
        match exit {
            Exit::Plain => self.plain.send(datagrams(transmit)),
            Exit::ThroughLoadBalancer { route, fallback } => {
                if fallback {
                    self.metrics.gue_return_fallback();
                }
                self.send_through_lb(transmit, route)
            }
            Exit::Direct { vip, fallback } => {
                if fallback {
                    self.metrics.gue_return_fallback();
                }
                self.send_direct(transmit, vip)
            }
        }
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        if bufs.is_empty() || meta.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let gue_first = self.gue_first.fetch_xor(true, Ordering::Relaxed);
        for gue in [gue_first, !gue_first] {
            let received = match gue {
                true => self.poll_gue(cx, bufs, meta),
                false => self.poll_plain(cx, bufs, meta),
            };
            if let Received::Some(count) = received {
                return Poll::Ready(Ok(count));
            }
        }
        Poll::Pending
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.plain.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.plain
            .max_gso_segments()
            .min(self.gue.max_gso_segments())
    }

    fn max_receive_segments(&self) -> usize {
        self.plain.gro_segments().max(self.gue.gro_segments())
    }

    fn may_fragment(&self) -> bool {
        self.plain.may_fragment() || self.gue.may_fragment()
    }
}

impl Exits for GueSocket {
    /// Every socket a transmit may leave by now.
    fn sockets(&self) -> Vec<Arc<UdpIo>> {
        let mut sockets = vec![self.plain.clone(), self.gue.clone()];
        sockets.extend(self.direct.bound());
        sockets
    }
}
