//! Probing a candidate path: Version-Negotiation-eliciting datagrams from the candidate
//! socket to the peer, retransmitted with backoff, until one is answered. The socket is not
//! quinn's yet, so the answers are read here and quinn never sees them.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use super::error::MigrationError;
use super::socket::{ObservedSocket, datagrams, same_address};
use super::timing::probe_interval;
use super::vn::VnProbe;

/// Room for one receive, a GRO batch included.
const RECV_BUFFER: usize = 64 * 1024;

/// Probes `peer` from `socket` until an answer or `timeout`; returns the round-trip time of
/// the answered probe. `rtt` (the connection's estimate) paces the retransmissions.
pub(super) async fn probe(
    socket: &ObservedSocket,
    peer: SocketAddr,
    rtt: Duration,
    timeout: Duration,
) -> Result<Duration, MigrationError> {
    tokio::time::timeout(timeout, answered(socket, peer, rtt))
        .await
        .map_err(|_| MigrationError::ProbeTimedOut(timeout))?
}

async fn answered(
    socket: &ObservedSocket,
    peer: SocketAddr,
    rtt: Duration,
) -> Result<Duration, MigrationError> {
    let mut buf = vec![0; RECV_BUFFER];
    // Every probe sent, with its send time: an answer to any of them counts.
    let mut sent: Vec<(VnProbe, Instant)> = Vec::new();
    let mut attempt = 0;
    loop {
        let probe = VnProbe::random();
        // Timed from before the send: on loopback the answer can be waiting by the time the
        // send returns.
        let sent_at = Instant::now();
        socket.send_to(&probe.datagram(), peer).await?;
        let resend_at = sent_at + probe_interval(rtt, attempt);
        sent.push((probe, sent_at));
        attempt = attempt.saturating_add(1);
        loop {
            let meta = tokio::select! {
                meta = socket.recv(&mut buf) => meta?,
                () = tokio::time::sleep_until(resend_at) => break,
            };
            if !same_address(meta.addr, peer) {
                continue;
            }
            let received = buf.get(..meta.len).unwrap_or(&buf);
            let answered_at = datagrams(received, meta.stride).find_map(|datagram| {
                sent.iter()
                    .find(|(probe, _)| probe.is_answered_by(datagram))
                    .map(|(_, at)| *at)
            });
            if let Some(at) = answered_at {
                return Ok(at.elapsed());
            }
        }
    }
}
