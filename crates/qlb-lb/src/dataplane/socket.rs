//! Opening the data plane's UDP sockets: the listening sockets, one per worker and address
//! sharing the address with SO_REUSEPORT (the kernel spreads clients over them by 4-tuple
//! hash), the GUE sockets (the same, per GUE port) and the per-flow upstream sockets.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Receive buffer asked for on listening sockets, so that a burst (or a flood) waits in the
/// kernel rather than being dropped there; the kernel caps it at `net.core.rmem_max`.
const LISTEN_RECV_BUFFER: usize = 4 << 20;

/// Send buffer asked for on GUE sockets: each carries the encapsulated datagrams of every
/// client of its worker that hashes to it, where proxy mode spreads them over flow sockets.
const GUE_SEND_BUFFER: usize = 4 << 20;

/// Attempts at finding a free port for a listening address with port 0.
const PORT_ATTEMPTS: usize = 8;

/// `count` sockets bound to `address` with SO_REUSEPORT. Port 0 becomes one free port that
/// all of them share (see [`free_port`]).
pub(crate) fn listeners(address: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    if address.port() != 0 {
        return (0..count).map(|_| listener(address)).collect();
    }
    let mut last_error = None;
    for _ in 0..PORT_ATTEMPTS {
        let port = free_port(address.ip())?;
        let bound: io::Result<Vec<UdpSocket>> = (0..count)
            .map(|_| listener(SocketAddr::new(address.ip(), port)))
            .collect();
        match bound {
            Err(error) if error.kind() == io::ErrorKind::AddrInUse => last_error = Some(error),
            other => return other,
        }
    }
    Err(last_error.unwrap_or_else(|| io::ErrorKind::AddrInUse.into()))
}

/// `count` GUE sockets on `address`: listening sockets (SO_REUSEPORT, a shared free port for
/// port 0) with a larger send buffer.
pub(crate) fn gue_sockets(address: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let sockets = listeners(address, count)?;
    for socket in &sockets {
        socket2::SockRef::from(socket).set_send_buffer_size(GUE_SEND_BUFFER)?;
    }
    Ok(sockets)
}

/// A port no socket holds on `ip` now. Binding port 0 with SO_REUSEPORT set could be given
/// a port that another SO_REUSEPORT socket of this user already holds (the kernel treats it as
/// shareable), silently splitting its traffic; a probe without SO_REUSEPORT gets a port nobody
/// holds, and is closed so that the listening sockets can take it.
fn free_port(ip: IpAddr) -> io::Result<u16> {
    Ok(UdpSocket::bind(SocketAddr::new(ip, 0))?
        .local_addr()?
        .port())
}

fn listener(address: SocketAddr) -> io::Result<UdpSocket> {
    let socket = udp_socket(address)?;
    socket.set_reuse_port(true)?;
    socket.set_recv_buffer_size(LISTEN_RECV_BUFFER)?;
    socket.bind(&address.into())?;
    Ok(socket.into())
}

/// A socket for one flow's datagrams to `backend` and its replies, connected to it: the
/// kernel delivers datagrams from `backend` only, so nobody else can reach the flow's client
/// through its port. Connecting an unbound socket binds it to an ephemeral port of the
/// address routing reaches `backend` from, not the unspecified address.
pub(crate) fn upstream(backend: SocketAddr) -> io::Result<UdpSocket> {
    let socket = udp_socket(backend)?;
    socket.connect(&backend.into())?;
    Ok(socket.into())
}

/// An unbound UDP socket for `address`'s family. IPv6 sockets are IPv6 only: a listening
/// `[::]` leaves `0.0.0.0` to be listed beside it, and an upstream socket's peers are IPv6
/// backends, never IPv4-mapped ones.
fn udp_socket(address: SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if address.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_becomes_one_shared_port() {
        let sockets = listeners("127.0.0.1:0".parse().expect("addr"), 3).expect("bind");
        let addresses: Vec<SocketAddr> = sockets
            .iter()
            .map(|s| s.local_addr().expect("bound"))
            .collect();
        assert_ne!(addresses[0].port(), 0);
        assert!(addresses.iter().all(|a| *a == addresses[0]));
    }

    #[test]
    fn a_port_held_without_reuseport_is_refused() {
        let holder = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let taken = holder.local_addr().expect("bound");
        let error = listeners(taken, 1).expect_err("in use");
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn upstream_sockets_are_connected_from_the_address_that_reaches_the_backend() {
        let backend = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let address = backend.local_addr().expect("bound");
        let socket = upstream(address).expect("socket");
        assert_eq!(socket.peer_addr().expect("connected"), address);
        let local = socket.local_addr().expect("bound");
        assert_eq!(local.ip(), address.ip());
        assert_ne!(local.port(), 0);

        // Only the backend's datagrams are delivered.
        let stranger = UdpSocket::bind("127.0.0.1:0").expect("bind");
        stranger.send_to(b"stranger", local).expect("send");
        backend.send_to(b"backend", local).expect("send");
        socket
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let mut buffer = [0; 16];
        let len = socket.recv(&mut buffer).expect("the backend's datagram");
        assert_eq!(&buffer[..len], b"backend");
    }

    #[test]
    fn ipv6_upstream_sockets_are_ipv6_only_and_connected() {
        // Hosts without IPv6 loopback have nothing to check.
        let Ok(backend) = UdpSocket::bind("[::1]:0") else {
            return;
        };
        let address = backend.local_addr().expect("bound");
        let socket = upstream(address).expect("socket");
        assert_eq!(socket.peer_addr().expect("connected"), address);
        assert_eq!(socket.local_addr().expect("bound").ip(), address.ip());
    }
}
