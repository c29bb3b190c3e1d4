//! One UDP socket as quinn's tokio runtime drives it (`quinn::udp` state over a tokio
//! socket), with the sends the GUE socket layer needs.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::task::{Context, Poll, ready};

use quinn::udp::{EcnCodepoint, RecvMeta, Transmit, UdpSocketState};
use tokio::io::Interest;

use super::transmit::gso_batches;

/// A UDP socket with quinn's batched, GSO/GRO- and ECN-aware I/O.
#[derive(Debug)]
pub(crate) struct UdpIo {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
}

/// Datagrams to send: `contents`, `stride` apart (the last may be shorter).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Datagrams<'a> {
    pub(crate) destination: SocketAddr,
    pub(crate) ecn: Option<EcnCodepoint>,
    pub(crate) src_ip: Option<IpAddr>,
    pub(crate) contents: &'a [u8],
    pub(crate) stride: usize,
}

impl UdpIo {
    /// Takes over `socket` (made non-blocking). Must run inside a tokio runtime.
    pub(crate) fn new(socket: std::net::UdpSocket) -> io::Result<Self> {
        let state = UdpSocketState::new((&socket).into())?;
        Ok(Self {
            io: tokio::net::UdpSocket::from_std(socket)?,
            state,
        })
    }

    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.local_addr()
    }

    /// Waits until the socket may be writable.
    pub(crate) async fn writable(&self) -> io::Result<()> {
        self.io.writable().await
    }

    /// Receives a batch, or registers `cx` to be woken when one may be there.
    pub(crate) fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_recv_ready(cx))?;
            match self.io.try_io(Interest::READABLE, || {
                self.state.recv((&self.io).into(), bufs, meta)
            }) {
                // try_io cleared the readiness: the next poll registers the waker.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                result => return Poll::Ready(result),
            }
        }
    }

    /// Sends `datagrams` in as few system calls as the socket's GSO allows. Errors other
    /// than `WouldBlock` are logged and swallowed, as quinn's own sockets do (UDP is
    /// unreliable anyway). After part of the datagrams went out, a `WouldBlock` drops the
    /// rest rather than have quinn send the whole transmit again: QUIC recovers losses,
    /// while duplicates would only waste the path.
    pub(crate) fn send(&self, datagrams: Datagrams<'_>) -> io::Result<()> {
        let mut sent = false;
        for range in gso_batches(
            datagrams.contents.len(),
            datagrams.stride,
            self.state.max_gso_segments(),
        ) {
            let Some(contents) = datagrams.contents.get(range) else {
                break;
            };
            let transmit = Transmit {
                destination: datagrams.destination,
                ecn: datagrams.ecn,
                contents,
                segment_size: (contents.len() > datagrams.stride).then_some(datagrams.stride),
                src_ip: datagrams.src_ip,
            };
            match self.io.try_io(Interest::WRITABLE, || {
                self.state.send((&self.io).into(), &transmit)
            }) {
                Ok(()) => sent = true,
                Err(error) if sent && error.kind() == io::ErrorKind::WouldBlock => break,
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    pub(crate) fn max_gso_segments(&self) -> usize {
        self.state.max_gso_segments()
    }

    pub(crate) fn gro_segments(&self) -> usize {
        self.state.gro_segments()
    }

    pub(crate) fn may_fragment(&self) -> bool {
        self.state.may_fragment()
    }
}
