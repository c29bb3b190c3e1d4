//! The demo's script: what happens when, as data. Times scale with the run's length, so a
//! shorter `--duration` keeps every step.

use std::time::Duration;

/// One step of the demo.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// The load balancer stops sending new connections to the backend (admin drain).
    DrainAtLoadBalancer(usize),
    /// The backend shuts down gracefully: GOAWAY, in-flight requests finish, then it stops.
    ShutDownBackend(usize),
    /// The backend starts again, same name, address and server ID, and is undrained.
    RestartBackend(usize),
    /// The load balancers learn the new QUIC-LB config at a new codepoint (reload).
    AddConfigAtLoadBalancer,
    /// The backends issue CIDs under the new config from now on.
    RotateBackends,
    /// Traffic stops; the report follows.
    Stop,
}

/// Which backend the demo restarts (the second one: `b2`).
pub(super) const RESTARTED: usize = 1;

/// The steps of a run of `total`, in time order. Migrations are not steps: they run all
/// along (one every [`migration_period`]).
pub(super) fn script(total: Duration) -> Vec<(Duration, Step)> {
    let at = |fraction: f64| total.mul_f64(fraction);
    vec![
        (at(0.25), Step::DrainAtLoadBalancer(RESTARTED)),
        (at(0.30), Step::ShutDownBackend(RESTARTED)),
        (at(0.45), Step::RestartBackend(RESTARTED)),
        (at(0.60), Step::AddConfigAtLoadBalancer),
        (at(0.65), Step::RotateBackends),
        (total, Step::Stop),
    ]
}

/// How often a client connection migrates: about 20 times per run, at least every 2 s.
pub(super) fn migration_period(total: Duration) -> Duration {
    (total / 20).clamp(Duration::from_millis(100), Duration::from_secs(2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_come_in_order_and_end_with_stop() {
        for seconds in [5, 20, 120] {
            let total = Duration::from_secs(seconds);
            let steps = script(total);
            assert!(
                steps.windows(2).all(|pair| pair[0].0 < pair[1].0),
                "{steps:?}"
            );
            assert_eq!(steps.last(), Some(&(total, Step::Stop)));
            let position = |step| steps.iter().position(|(_, s)| *s == step);
            assert!(
                position(Step::DrainAtLoadBalancer(RESTARTED))
                    < position(Step::ShutDownBackend(RESTARTED))
            );
            assert!(position(Step::AddConfigAtLoadBalancer) < position(Step::RotateBackends));
        }
    }

    #[test]
    fn migrations_are_frequent_but_bounded() {
        assert_eq!(
            migration_period(Duration::from_secs(20)),
            Duration::from_secs(1)
        );
        assert_eq!(
            migration_period(Duration::from_secs(600)),
            Duration::from_secs(2)
        );
        assert_eq!(
            migration_period(Duration::from_secs(1)),
            Duration::from_millis(100)
        );
    }
}
