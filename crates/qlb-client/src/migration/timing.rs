//! How long migration steps wait, from the connection's RTT estimate alone: quinn exposes the
//! smoothed RTT but neither the RTT variance nor the peer's `max_ack_delay`, so the probe
//! timeout (PTO, RFC 9002 section 6.2.1) is estimated with RFC 9002's defaults for both.

use std::time::Duration;

/// RFC 9002's `max_ack_delay` default (the peer's own value is not exposed by quinn).
const MAX_ACK_DELAY: Duration = Duration::from_millis(25);
/// A switch waits at least this long for traffic on the new path (DESIGN.md section 2).
const MIN_CONFIRMATION: Duration = Duration::from_millis(300);
/// How often a switch looks whether the handshake is confirmed yet.
pub(super) const CONFIRMATION_POLL: Duration = Duration::from_millis(5);
/// Probe retransmissions back off exponentially up to this interval.
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(2);

/// The PTO for `rtt`, with the RTT variance at RFC 9002's initial `rtt / 2`:
/// `rtt + 4 * rtt / 2 + max_ack_delay`.
fn pto(rtt: Duration) -> Duration {
    rtt.saturating_mul(3).saturating_add(MAX_ACK_DELAY)
}

/// How long a switch waits for the peer's traffic on the new path before rolling back:
/// `max(300 ms, 3 PTO)`. Three PTOs let quinn's PING after the rebind, and two of its
/// retransmissions, get an answer.
pub(super) fn confirmation_window(rtt: Duration) -> Duration {
    pto(rtt).saturating_mul(3).max(MIN_CONFIRMATION)
}

/// How long after its `attempt`th datagram (from 0) a probe sends the next one: one PTO,
/// doubling with each attempt, at most [`MAX_PROBE_INTERVAL`].
pub(super) fn probe_interval(rtt: Duration, attempt: u32) -> Duration {
    pto(rtt)
        .saturating_mul(1_u32.checked_shl(attempt).unwrap_or(u32::MAX))
        .min(MAX_PROBE_INTERVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn confirmation_waits_at_least_300_ms() {
        assert_eq!(confirmation_window(Duration::ZERO), 300 * MS);
        assert_eq!(confirmation_window(MS), 300 * MS);
        // 3 * (3 * 100 + 25) ms.
        assert_eq!(confirmation_window(100 * MS), 975 * MS);
        assert_eq!(confirmation_window(Duration::MAX), Duration::MAX);
    }

    #[test]
    fn probes_back_off_to_a_ceiling() {
        let rtt = 10 * MS;
        let intervals: Vec<_> = (0..5).map(|attempt| probe_interval(rtt, attempt)).collect();
        assert_eq!(intervals, [55 * MS, 110 * MS, 220 * MS, 440 * MS, 880 * MS]);
        assert_eq!(probe_interval(rtt, 6), MAX_PROBE_INTERVAL);
        assert_eq!(probe_interval(rtt, u32::MAX), MAX_PROBE_INTERVAL);
        assert_eq!(probe_interval(Duration::MAX, 0), MAX_PROBE_INTERVAL);
    }
}
