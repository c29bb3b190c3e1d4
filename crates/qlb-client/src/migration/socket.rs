//! The UDP socket a migratable endpoint does its I/O through. It wraps quinn's runtime socket
//! and, while a switch watches it, counts the connection's datagrams arriving from the peer:
//! that count is how a switch is confirmed. Before quinn owns it, the probe reads and writes
//! it directly.

use std::future::poll_fn;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use quinn::udp::{RecvMeta, Transmit};
use quinn::{AsyncUdpSocket, UdpPoller};
use tokio::sync::Notify;

/// A socket quinn may use, observed by the migration logic.
#[derive(Debug)]
pub(super) struct ObservedSocket {
    inner: Arc<dyn AsyncUdpSocket>,
    /// Whose datagrams count; `None` for a socket nobody watches (the endpoint's first).
    peer: Option<SocketAddr>,
    /// Counting only while a switch watches keeps the receive path at one atomic load.
    watching: AtomicBool,
    /// Short-header datagrams from `peer` counted while watched.
    from_peer: AtomicU64,
    arrivals: Notify,
}

impl ObservedSocket {
    /// Wraps `inner`; datagrams from `peer` count while watched.
    pub(super) fn new(inner: Arc<dyn AsyncUdpSocket>, peer: Option<SocketAddr>) -> Self {
        Self {
            inner,
            peer,
            watching: AtomicBool::new(false),
            from_peer: AtomicU64::new(0),
            arrivals: Notify::new(),
        }
    }

    /// Starts counting; returns the count so far, for [`Self::arrived_since`].
    pub(super) fn watch(&self) -> u64 {
        self.watching.store(true, Ordering::Release);
        self.from_peer.load(Ordering::Acquire)
    }

    /// Stops counting.
    pub(super) fn unwatch(&self) {
        self.watching.store(false, Ordering::Release);
    }

    /// Waits until a datagram from the peer has arrived since the count was `seen`.
    /// Cancel it (with a timeout) to give up.
    pub(super) async fn arrived_since(&self, seen: u64) {
        loop {
            let arrival = self.arrivals.notified();
            tokio::pin!(arrival);
            // Registered before the check, so an arrival in between is not missed.
            arrival.as_mut().enable();
            if self.from_peer.load(Ordering::Acquire) != seen {
                return;
            }
            arrival.await;
        }
    }

    /// Sends one datagram, bypassing quinn (for probes, before quinn owns the socket).
    pub(super) async fn send_to(&self, datagram: &[u8], destination: SocketAddr) -> io::Result<()> {
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: datagram,
            segment_size: None,
            src_ip: None,
        };
        let mut writable = self.inner.clone().create_io_poller();
        poll_fn(|cx| {
            loop {
                match self.inner.try_send(&transmit) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        ready!(writable.as_mut().poll_writable(cx))?;
                    }
                    sent => return Poll::Ready(sent),
                }
            }
        })
        .await
    }

    /// Receives into `buf`, bypassing quinn (for probes, before quinn owns the socket).
    /// Cancel-safe: a datagram is either returned or left in the socket.
    pub(super) async fn recv(&self, buf: &mut [u8]) -> io::Result<RecvMeta> {
        let mut meta = [RecvMeta::default()];
        poll_fn(|cx| {
            self.inner
                .poll_recv(cx, &mut [IoSliceMut::new(&mut *buf)], &mut meta)
        })
        .await?;
        Ok(meta[0])
    }

    fn observe(&self, bufs: &[IoSliceMut<'_>], meta: &[RecvMeta]) {
        let Some(peer) = self.peer else {
            return;
        };
        if !self.watching.load(Ordering::Acquire) {
            return;
        }
        let from_peer = bufs
            .iter()
            .zip(meta)
            .filter(|(_, meta)| same_address(meta.addr, peer))
            .flat_map(|(buf, meta)| {
                let buf: &[u8] = buf;
                datagrams(buf.get(..meta.len).unwrap_or(buf), meta.stride)
            })
            // After the handshake the connection's packets have short headers; a late
            // Version Negotiation answer to a probe (long header) proves nothing about it.
            .filter(|datagram| datagram.first().is_some_and(|first| first & 0x80 == 0))
            .count();
        if from_peer > 0 {
            self.from_peer.fetch_add(from_peer as u64, Ordering::AcqRel);
            self.arrivals.notify_waiters();
        }
    }
}

impl AsyncUdpSocket for ObservedSocket {
    fn create_io_poller(self: Arc<Self>) -> Pin<Box<dyn UdpPoller>> {
        self.inner.clone().create_io_poller()
    }

    fn try_send(&self, transmit: &Transmit) -> io::Result<()> {
        self.inner.try_send(transmit)
    }

    fn poll_recv(
        &self,
        cx: &mut Context,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let received = ready!(self.inner.poll_recv(cx, bufs, meta))?;
        self.observe(bufs, meta.get(..received).unwrap_or(meta));
        Poll::Ready(Ok(received))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn max_transmit_segments(&self) -> usize {
        self.inner.max_transmit_segments()
    }

    fn max_receive_segments(&self) -> usize {
        self.inner.max_receive_segments()
    }

    fn may_fragment(&self) -> bool {
        self.inner.may_fragment()
    }
}

/// The datagrams of one receive buffer: one, or several of `stride` octets (GRO).
pub(super) fn datagrams(buf: &[u8], stride: usize) -> std::slice::Chunks<'_, u8> {
    buf.chunks(if stride == 0 {
        buf.len().max(1)
    } else {
        stride
    })
}

/// Whether two addresses are the same, an IPv4 address and its IPv4-mapped IPv6 form alike
/// (a dual-stack socket reports IPv4 peers in the mapped form).
pub(super) fn same_address(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_gro_batches() {
        let buf: Vec<u8> = (0..10).collect();
        let lens: Vec<usize> = datagrams(&buf, 4).map(<[u8]>::len).collect();
        assert_eq!(lens, [4, 4, 2]);
        assert_eq!(datagrams(&buf, 10).count(), 1);
        assert_eq!(datagrams(&buf, 0).count(), 1, "no stride: one datagram");
        assert_eq!(datagrams(&[], 0).count(), 0);
    }

    #[test]
    fn mapped_addresses_are_the_same() {
        let v4: SocketAddr = "127.0.0.1:443".parse().expect("addr");
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:443".parse().expect("addr");
        assert!(same_address(v4, mapped));
        assert!(!same_address(v4, "127.0.0.1:444".parse().expect("addr")));
        assert!(!same_address(v4, "127.0.0.2:443".parse().expect("addr")));
    }
}
