//! When a connection sends its GOAWAYs and closes, as pure decisions over an explicit `now`:
//! max connection age (with jitter), age grace, max idle, and server shutdown. The connection
//! task ([`crate::connection`]) does the I/O; everything it decides comes from here.

use std::time::{Duration, Instant};

use crate::error::BuildError;

/// Connection recycling limits. All off by default, as in gRPC.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ConnectionLimits {
    /// Send GOAWAY once a connection is this old, +-10%.
    pub max_age: Option<Duration>,
    /// After the age GOAWAY, close the connection this much later even with requests in flight.
    pub max_age_grace: Option<Duration>,
    /// Send GOAWAY once a connection has had no request in flight for this long.
    pub max_idle: Option<Duration>,
}

/// The longest connection age a server may set: a year outlasts any deploy cycle; more is
/// "never", which leaving the setting off already says.
pub(crate) const MAX_AGE_LIMIT: Duration = Duration::from_secs(365 * 24 * 3600);
/// The longest idle time a server may set: a day outlasts any sensible idle connection.
pub(crate) const MAX_IDLE_LIMIT: Duration = Duration::from_secs(24 * 3600);

impl ConnectionLimits {
    /// Refuses a limit too long to add to an `Instant`, naming the builder setting: the
    /// connection task adds each to its start, and an overflow would panic there.
    pub(crate) fn validate(&self) -> Result<(), BuildError> {
        for (setting, value, max) in [
            ("max_connection_age", self.max_age, MAX_AGE_LIMIT),
            // The grace may let a long download finish: as long as an age.
            (
                "max_connection_age_grace",
                self.max_age_grace,
                MAX_AGE_LIMIT,
            ),
            ("max_connection_idle", self.max_idle, MAX_IDLE_LIMIT),
        ] {
            if let Some(value) = value.filter(|&value| value > max) {
                return Err(BuildError::DurationTooLong {
                    setting,
                    value,
                    max,
                });
            }
        }
        Ok(())
    }
}

/// The share of `max_age` by which the age deadline may move either way, so that connections
/// opened together (after a deploy, a scale-up) do not all reconnect at the same moment.
const AGE_JITTER: f64 = 0.1;
/// Shortest wait between the two GOAWAYs: loopback RTTs are microseconds, but a client's
/// request may still be between its `open` and the wire.
const MIN_GOAWAY_SETTLE: Duration = Duration::from_millis(10);
/// Longest wait between the two GOAWAYs, whatever the RTT estimate says.
const MAX_GOAWAY_SETTLE: Duration = Duration::from_secs(2);
/// How long a drained connection with nothing in flight stays open before the server closes
/// it, so that the client can read its last response and close first: a CONNECTION_CLOSE
/// right behind the response makes the client's QUIC stack discard what its application had
/// not read yet (seen with `qlb serve` on a loaded machine). The drain deadline still wins.
const CLOSE_LINGER: Duration = Duration::from_millis(200);

/// `max_age` moved by `unit * 10%`; `unit` is a random draw from -1.0..=1.0 (clamped).
pub(crate) fn jittered_age(max_age: Duration, unit: f64) -> Duration {
    max_age.mul_f64(1.0 + AGE_JITTER * unit.clamp(-1.0, 1.0))
}

/// How long to wait between the initial GOAWAY (which admits everything) and the final one
/// (which fixes the last request): RFC 9114 section 5.2 asks for at least one round trip,
/// so that requests the client sent before it saw the first GOAWAY arrive. Two RTTs, bounded.
pub(crate) fn goaway_settle_time(rtt: Duration) -> Duration {
    (rtt * 2).clamp(MIN_GOAWAY_SETTLE, MAX_GOAWAY_SETTLE)
}

/// Why a connection is being drained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DrainReason {
    /// The server is shutting down.
    Shutdown,
    /// The connection reached its (jittered) maximum age.
    MaxAge,
    /// The connection had no request in flight for the maximum idle time.
    MaxIdle,
}

/// Why a connection ended; the `reason` label of the closes metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum CloseReason {
    /// Drained for shutdown: every request finished before the deadline.
    Shutdown,
    /// Closed at the shutdown deadline with requests still in flight.
    ShutdownDeadline,
    /// Drained at max age: every request finished within the grace.
    MaxAge,
    /// Closed when the max-age grace ran out, requests still in flight.
    MaxAgeGrace,
    /// Drained after the max idle time.
    MaxIdle,
    /// The client closed the connection, or sent GOAWAY and finished its requests.
    Peer,
    /// The QUIC idle timeout expired.
    TimedOut,
    /// A transport or HTTP/3 protocol error ended the connection.
    Error,
}

impl CloseReason {
    /// The metric label.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Shutdown => "shutdown",
            Self::ShutdownDeadline => "shutdown_deadline",
            Self::MaxAge => "max_age",
            Self::MaxAgeGrace => "max_age_grace",
            Self::MaxIdle => "max_idle",
            Self::Peer => "peer",
            Self::TimedOut => "timeout",
            Self::Error => "error",
        }
    }
}

impl DrainReason {
    fn close_reason(self, cut_short: bool) -> CloseReason {
        match (self, cut_short) {
            (Self::Shutdown, false) => CloseReason::Shutdown,
            (Self::Shutdown, true) => CloseReason::ShutdownDeadline,
            (Self::MaxAge, false) => CloseReason::MaxAge,
            (Self::MaxAge, true) => CloseReason::MaxAgeGrace,
            // Idle drains have no deadline of their own; a shutdown takes them over.
            (Self::MaxIdle, _) => CloseReason::MaxIdle,
        }
    }
}

/// What the connection task must do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Nothing until this instant (or until a request starts or ends, or a shutdown).
    Wait(Option<Instant>),
    /// Send the first GOAWAY, which still admits every request (id 2^62-4).
    SendInitialGoaway,
    /// Send the final GOAWAY, which admits only the requests already accepted.
    SendFinalGoaway,
    /// Close the connection with H3_NO_ERROR.
    Close(CloseReason),
}

/// The drain of one connection, from the first GOAWAY to the close.
#[derive(Clone, Copy, Debug)]
struct Drain {
    reason: DrainReason,
    initial_goaway_sent: bool,
    final_goaway_at: Instant,
    final_goaway_sent: bool,
    /// Close even with requests in flight at this instant; `None` waits for them.
    close_at: Option<Instant>,
    /// Once the final GOAWAY is out and nothing is in flight: close at this instant, after
    /// [`CLOSE_LINGER`], unless the client has closed first.
    idle_close_at: Option<Instant>,
}

/// One connection's lifecycle: serving, then draining (two GOAWAYs), then closed.
#[derive(Clone, Debug)]
pub(crate) struct Lifecycle {
    age_deadline: Option<Instant>,
    max_age_grace: Option<Duration>,
    max_idle: Option<Duration>,
    /// Since when no request has been in flight.
    idle_since: Option<Instant>,
    drain: Option<Drain>,
}

impl Lifecycle {
    /// A connection established at `started`; `jitter_unit` (-1.0..=1.0) moves its age deadline.
    pub(crate) fn new(started: Instant, limits: &ConnectionLimits, jitter_unit: f64) -> Self {
        Self {
            age_deadline: limits
                .max_age
                .map(|age| started + jittered_age(age, jitter_unit)),
            max_age_grace: limits.max_age_grace,
            max_idle: limits.max_idle,
            idle_since: Some(started),
            drain: None,
        }
    }

    /// The server is shutting down: drain now if not yet draining, and close at `deadline`
    /// at the latest.
    pub(crate) fn shutdown(&mut self, now: Instant, deadline: Instant, settle: Duration) {
        match &mut self.drain {
            Some(drain) => {
                drain.reason = DrainReason::Shutdown;
                drain.close_at = Some(drain.close_at.map_or(deadline, |at| at.min(deadline)));
            }
            None => self.start_drain(DrainReason::Shutdown, now, Some(deadline), settle),
        }
    }

    /// Whether anything can ever happen without a shutdown: a limit is set, or a drain has
    /// started. Without, [`Lifecycle::next_step`] always says wait forever, and a busy
    /// connection need not ask (nor read the clock) twice per request.
    pub(crate) fn is_active(&self) -> bool {
        self.age_deadline.is_some() || self.max_idle.is_some() || self.drain.is_some()
    }

    /// The next thing to do, given the time and the number of requests in flight. Call it
    /// after every event, and again after acting on any step other than [`Step::Wait`].
    /// `settle` is asked only when a drain starts (it reads the RTT).
    pub(crate) fn next_step(
        &mut self,
        now: Instant,
        in_flight: usize,
        settle: impl FnOnce() -> Duration,
    ) -> Step {
        self.idle_since = match in_flight {
            0 => Some(self.idle_since.unwrap_or(now)),
            _ => None,
        };
        if self.drain.is_none() {
            let idle_deadline = self.idle_deadline();
            if self.age_deadline.is_some_and(|at| at <= now) {
                let close_at = self.max_age_grace.map(|grace| now + grace);
                self.start_drain(DrainReason::MaxAge, now, close_at, settle());
            } else if idle_deadline.is_some_and(|at| at <= now) {
                self.start_drain(DrainReason::MaxIdle, now, None, settle());
            } else {
                return Step::Wait(earliest(self.age_deadline, idle_deadline));
            }
        }
        let Some(drain) = self.drain.as_mut() else {
            return Step::Wait(None);
        };
        if !drain.initial_goaway_sent {
            drain.initial_goaway_sent = true;
            return Step::SendInitialGoaway;
        }
        if drain.close_at.is_some_and(|at| at <= now) {
            return Step::Close(drain.reason.close_reason(in_flight > 0));
        }
        if !drain.final_goaway_sent {
            if drain.final_goaway_at <= now {
                drain.final_goaway_sent = true;
                return Step::SendFinalGoaway;
            }
            return Step::Wait(earliest(Some(drain.final_goaway_at), drain.close_at));
        }
        if in_flight == 0 {
            let idle_close_at = *drain.idle_close_at.get_or_insert(now + CLOSE_LINGER);
            if idle_close_at <= now {
                return Step::Close(drain.reason.close_reason(false));
            }
            return Step::Wait(earliest(Some(idle_close_at), drain.close_at));
        }
        Step::Wait(drain.close_at)
    }

    fn idle_deadline(&self) -> Option<Instant> {
        Some(self.idle_since? + self.max_idle?)
    }

    fn start_drain(
        &mut self,
        reason: DrainReason,
        now: Instant,
        close_at: Option<Instant>,
        settle: Duration,
    ) {
        self.drain = Some(Drain {
            reason,
            initial_goaway_sent: false,
            final_goaway_at: now + settle,
            final_goaway_sent: false,
            close_at,
            idle_close_at: None,
        });
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_millis(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn limits(age: Option<u64>, grace: Option<u64>, idle: Option<u64>) -> ConnectionLimits {
        ConnectionLimits {
            max_age: age.map(ms),
            max_age_grace: grace.map(ms),
            max_idle: idle.map(ms),
        }
    }

    /// Steps until a `Wait` or `Close`, collecting what was done.
    fn run(lc: &mut Lifecycle, now: Instant, in_flight: usize) -> Vec<Step> {
        let mut steps = Vec::new();
        loop {
            let step = lc.next_step(now, in_flight, || SETTLE);
            steps.push(step);
            if matches!(step, Step::Wait(_) | Step::Close(_)) {
                return steps;
            }
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let age = Duration::from_secs(100);
        assert_eq!(jittered_age(age, 0.0), age);
        assert_eq!(jittered_age(age, 1.0), Duration::from_secs(110));
        assert_eq!(jittered_age(age, -1.0), Duration::from_secs(90));
        assert_eq!(jittered_age(age, 7.0), Duration::from_secs(110));
    }

    #[test]
    fn settle_time_is_two_rtts_bounded() {
        assert_eq!(goaway_settle_time(Duration::ZERO), MIN_GOAWAY_SETTLE);
        assert_eq!(goaway_settle_time(ms(100)), ms(200));
        assert_eq!(
            goaway_settle_time(Duration::from_secs(5)),
            MAX_GOAWAY_SETTLE
        );
    }

    #[test]
    fn without_limits_a_connection_waits_forever() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, &ConnectionLimits::default(), 0.0);
        assert_eq!(
            run(&mut lc, t0 + Duration::from_secs(86_400), 0),
            [Step::Wait(None)]
        );
    }

    #[test]
    fn max_age_is_jittered_then_two_goaways_then_close_when_idle() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, &limits(Some(1000), None, None), 0.5);
        assert_eq!(run(&mut lc, t0, 1), [Step::Wait(Some(t0 + ms(1050)))]);
        assert_eq!(
            run(&mut lc, t0 + ms(1049), 1),
            [Step::Wait(Some(t0 + ms(1050)))]
        );
        let at = t0 + ms(1050);
        assert_eq!(
            run(&mut lc, at, 1),
            [Step::SendInitialGoaway, Step::Wait(Some(at + SETTLE))]
        );
        // No grace: a request in flight holds the connection open indefinitely, as in gRPC.
        assert_eq!(
            run(&mut lc, at + SETTLE, 1),
            [Step::SendFinalGoaway, Step::Wait(None)]
        );
        let quiet = at + Duration::from_secs(3600);
        assert_eq!(
            run(&mut lc, quiet, 0),
            [Step::Wait(Some(quiet + CLOSE_LINGER))]
        );
        assert_eq!(
            run(&mut lc, quiet + CLOSE_LINGER, 0),
            [Step::Close(CloseReason::MaxAge)]
        );
    }

    #[test]
    fn grace_closes_with_requests_in_flight() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, &limits(Some(1000), Some(500), None), 0.0);
        let at = t0 + ms(1000);
        assert_eq!(
            run(&mut lc, at, 2),
            [Step::SendInitialGoaway, Step::Wait(Some(at + SETTLE))]
        );
        assert_eq!(
            run(&mut lc, at + SETTLE, 2),
            [Step::SendFinalGoaway, Step::Wait(Some(at + ms(500)))]
        );
        assert_eq!(
            run(&mut lc, at + ms(500), 2),
            [Step::Close(CloseReason::MaxAgeGrace)]
        );
    }

    #[test]
    fn requests_that_finish_within_grace_close_as_max_age() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, &limits(Some(1000), Some(500), None), 0.0);
        run(&mut lc, t0 + ms(1000), 1);
        run(&mut lc, t0 + ms(1000) + SETTLE, 1);
        assert_eq!(
            run(&mut lc, t0 + ms(1200), 0),
            [Step::Wait(Some(t0 + ms(1200) + CLOSE_LINGER))]
        );
        assert_eq!(
            run(&mut lc, t0 + ms(1200) + CLOSE_LINGER, 0),
            [Step::Close(CloseReason::MaxAge)]
        );
    }

    #[test]
    fn grace_shorter_than_settle_closes_before_the_final_goaway() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, &limits(Some(100), Some(0), None), 0.0);
        assert_eq!(
            run(&mut lc, t0 + ms(100), 0),
            [Step::SendInitialGoaway, Step::Close(CloseReason::MaxAge)]
        );
    }

    #[test]
    fn max_idle_counts_from_the_last_request() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, &limits(None, None, Some(300)), 0.0);
        assert_eq!(run(&mut lc, t0, 0), [Step::Wait(Some(t0 + ms(300)))]);
        // A request from 100 to 250 ms restarts the idle clock.
        assert_eq!(run(&mut lc, t0 + ms(100), 1), [Step::Wait(None)]);
        assert_eq!(
            run(&mut lc, t0 + ms(250), 0),
            [Step::Wait(Some(t0 + ms(550)))]
        );
        let at = t0 + ms(550);
        assert_eq!(
            run(&mut lc, at, 0),
            [Step::SendInitialGoaway, Step::Wait(Some(at + SETTLE))]
        );
        assert_eq!(
            run(&mut lc, at + SETTLE, 0),
            [
                Step::SendFinalGoaway,
                Step::Wait(Some(at + SETTLE + CLOSE_LINGER))
            ]
        );
        assert_eq!(
            run(&mut lc, at + SETTLE + CLOSE_LINGER, 0),
            [Step::Close(CloseReason::MaxIdle)]
        );
    }

    #[test]
    fn age_and_idle_wait_for_whichever_comes_first() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, &limits(Some(1000), None, Some(300)), 0.0);
        assert_eq!(run(&mut lc, t0, 0), [Step::Wait(Some(t0 + ms(300)))]);
        assert_eq!(run(&mut lc, t0, 1), [Step::Wait(Some(t0 + ms(1000)))]);
    }

    #[test]
    fn shutdown_drains_and_closes_at_zero_or_at_the_deadline() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(5);
        let mut quiet = Lifecycle::new(t0, &ConnectionLimits::default(), 0.0);
        quiet.shutdown(t0, deadline, SETTLE);
        assert_eq!(
            run(&mut quiet, t0, 0),
            [Step::SendInitialGoaway, Step::Wait(Some(t0 + SETTLE))]
        );
        assert_eq!(
            run(&mut quiet, t0 + SETTLE, 0),
            [
                Step::SendFinalGoaway,
                Step::Wait(Some(t0 + SETTLE + CLOSE_LINGER))
            ]
        );
        assert_eq!(
            run(&mut quiet, t0 + SETTLE + CLOSE_LINGER, 0),
            [Step::Close(CloseReason::Shutdown)]
        );

        let mut busy = Lifecycle::new(t0, &ConnectionLimits::default(), 0.0);
        busy.shutdown(t0, deadline, SETTLE);
        run(&mut busy, t0, 3);
        assert_eq!(
            run(&mut busy, t0 + SETTLE, 3),
            [Step::SendFinalGoaway, Step::Wait(Some(deadline))]
        );
        assert_eq!(
            run(&mut busy, deadline, 3),
            [Step::Close(CloseReason::ShutdownDeadline)]
        );
    }

    #[test]
    fn shutdown_takes_over_a_running_drain_without_a_second_initial_goaway() {
        let t0 = Instant::now();
        let mut lc = Lifecycle::new(t0, &limits(Some(100), Some(10_000), None), 0.0);
        run(&mut lc, t0 + ms(100), 1);
        lc.shutdown(t0 + ms(105), t0 + ms(200), SETTLE);
        assert_eq!(
            run(&mut lc, t0 + ms(105), 1),
            [Step::Wait(Some(t0 + ms(100) + SETTLE))]
        );
        assert_eq!(
            run(&mut lc, t0 + ms(110), 1),
            [Step::SendFinalGoaway, Step::Wait(Some(t0 + ms(200)))]
        );
        assert_eq!(
            run(&mut lc, t0 + ms(200), 1),
            [Step::Close(CloseReason::ShutdownDeadline)]
        );
        // A later, looser deadline does not postpone the close.
        lc.shutdown(t0 + ms(200), t0 + ms(900), SETTLE);
        assert_eq!(
            run(&mut lc, t0 + ms(200), 1),
            [Step::Close(CloseReason::ShutdownDeadline)]
        );
    }

    #[test]
    fn close_reason_labels_are_distinct() {
        let all = [
            CloseReason::Shutdown,
            CloseReason::ShutdownDeadline,
            CloseReason::MaxAge,
            CloseReason::MaxAgeGrace,
            CloseReason::MaxIdle,
            CloseReason::Peer,
            CloseReason::TimedOut,
            CloseReason::Error,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|r| r.as_str()).collect();
        assert_eq!(labels.len(), all.len());
    }
}
