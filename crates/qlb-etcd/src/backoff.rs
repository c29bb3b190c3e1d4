//! How long to wait before trying etcd again: 250 ms, doubling up to 4 s, each wait give or
//! take a quarter, so that processes that lost etcd together do not all come back at the
//! same instant.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(250);
const LONGEST: Duration = Duration::from_secs(4);

/// Waits between tries of etcd.
///
/// ```
/// let mut backoff = qlb_etcd::Backoff::default();
/// let first = backoff.next_wait();
/// assert!(first >= std::time::Duration::from_millis(187) && first <= std::time::Duration::from_millis(313));
/// backoff.reset();
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    wait: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { wait: FIRST }
    }
}

impl Backoff {
    /// The next wait (jittered), doubling the one after it up to 4 s.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.wait.mul_f64(0.75 + rand::random::<f64>() / 2.0);
        self.wait = (self.wait * 2).min(LONGEST);
        wait
    }

    /// Back to the first wait, after a success.
    pub fn reset(&mut self) {
        self.wait = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_longest_and_start_over_after_a_reset() {
        let mut backoff = Backoff::default();
        let waits: Vec<Duration> = (0..8).map(|_| backoff.next_wait()).collect();
        for (wait, nominal) in waits
            .iter()
            .zip([250, 500, 1000, 2000, 4000, 4000, 4000, 4000])
        {
            let nominal = Duration::from_millis(nominal);
            assert!(
                *wait >= nominal.mul_f64(0.75) && *wait <= nominal.mul_f64(1.25),
                "{waits:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_wait() <= FIRST.mul_f64(1.25));
    }
}
