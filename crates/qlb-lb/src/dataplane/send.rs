//! Sending a transmit, and what a failed send counts as: a datagram that cannot be sent is
//! dropped and counted, never queued.

use std::io;

use mio::net::UdpSocket;
use quinn_udp::{Transmit, UdpSocketState};

use super::stats::DataplaneDrop;

/// Sends `transmit` through `socket`; a failure is the drop it counts as.
#[inline]
pub(super) fn send(
    socket: &UdpSocket,
    state: &UdpSocketState,
    transmit: &Transmit<'_>,
) -> Result<(), DataplaneDrop> {
    state
        .try_send(socket.into(), transmit)
        .map_err(|error| send_drop(&error))
}

/// Why a datagram that failed to send with `error` is dropped.
#[must_use]
fn send_drop(error: &io::Error) -> DataplaneDrop {
    match error.kind() {
        io::ErrorKind::WouldBlock => DataplaneDrop::SendBlocked,
        _ if error.raw_os_error() == Some(libc::EMSGSIZE) => DataplaneDrop::Oversized,
        _ => DataplaneDrop::SendError,
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
}
