//! Waiting with deadlines: nothing in a test waits forever, and a wait that runs out says
//! what it waited for.

use std::future::{Future, Ready, ready};
use std::time::{Duration, Instant};

use crate::TestResult;

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(10);
/// How often [`poll_blocking`] asks again (each probe is a request to a process).
const PROBE: Duration = Duration::from_millis(20);

/// A condition [`eventually`] polls: a closure returning `bool`, or one returning a future
/// of `bool` (for conditions that must await, such as a status call). `M` only tells the two
/// kinds apart.
pub trait Condition<M> {
    /// The future one check returns.
    type Check: Future<Output = bool>;
    /// Checks the condition once.
    fn check(&mut self) -> Self::Check;
}

/// Marks a condition that answers at once.
#[doc(hidden)]
pub enum Immediate {}

/// Marks a condition that answers with a future.
#[doc(hidden)]
pub enum Awaited {}

impl<F: FnMut() -> bool> Condition<Immediate> for F {
    type Check = Ready<bool>;
    fn check(&mut self) -> Self::Check {
        ready(self())
    }
}

impl<F, Fut> Condition<Awaited> for F
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    type Check = Fut;
    fn check(&mut self) -> Fut {
        self()
    }
}

/// Waits until `condition` holds, checking every 10 ms; fails naming `what` once `limit` has
/// passed.
pub async fn eventually<M>(
    limit: Duration,
    what: &str,
    mut condition: impl Condition<M>,
) -> TestResult {
    let deadline = Instant::now() + limit;
    while !condition.check().await {
        if Instant::now() > deadline {
            return Err(timed_out(what, limit).into());
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// [`eventually`] for tests without an async runtime (threads and blocking sockets).
pub fn eventually_blocking(
    limit: Duration,
    what: &str,
    mut condition: impl FnMut() -> bool,
) -> TestResult {
    let deadline = Instant::now() + limit;
    while !condition() {
        if Instant::now() > deadline {
            return Err(timed_out(what, limit).into());
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// What [`poll_blocking`] ended with: the last answer, and whether the condition held of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Polled<T> {
    /// The condition held of this answer.
    Held(T),
    /// The limit passed; this was the last answer (for the error message).
    TimedOut(T),
}

impl<T> Polled<T> {
    /// The answer, whether the condition held or not (for waits that only settle).
    pub fn into_inner(self) -> T {
        match self {
            Self::Held(answer) | Self::TimedOut(answer) => answer,
        }
    }
}

/// Asks `probe` every 20 ms until `done` holds of its answer or `limit` passes, and says
/// which with the last answer, so that a caller's error can show what it saw. A failed
/// probe fails the wait.
pub fn poll_blocking<T>(
    limit: Duration,
    mut probe: impl FnMut() -> TestResult<T>,
    mut done: impl FnMut(&T) -> bool,
) -> TestResult<Polled<T>> {
    let deadline = Instant::now() + limit;
    loop {
        let answer = probe()?;
        if done(&answer) {
            return Ok(Polled::Held(answer));
        }
        if Instant::now() > deadline {
            return Ok(Polled::TimedOut(answer));
        }
        std::thread::sleep(PROBE);
    }
}

/// Awaits `future` for at most `limit`; fails naming `what` after that.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    future: impl Future<Output = T>,
) -> TestResult<T> {
    tokio::time::timeout(limit, future)
        .await
        .map_err(|_| timed_out(what, limit).into())
}

fn timed_out(what: &str, limit: Duration) -> String {
    format!("timed out after {limit:?} waiting for: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_condition_that_never_holds_fails_naming_it() {
        let error = eventually(Duration::from_millis(30), "the impossible", || false)
            .await
            .expect_err("never holds");
        assert!(error.to_string().contains("the impossible"), "{error}");
    }

    #[tokio::test]
    async fn awaited_conditions_are_polled_until_they_hold() -> TestResult {
        let mut polls = 0;
        eventually(Duration::from_secs(5), "three polls", || {
            polls += 1;
            let done = polls >= 3;
            async move { done }
        })
        .await?;
        assert_eq!(polls, 3);
        Ok(())
    }

    #[test]
    fn blocking_waits_fail_after_the_limit() {
        let started = Instant::now();
        assert!(eventually_blocking(Duration::from_millis(30), "never", || false).is_err());
        assert!(started.elapsed() >= Duration::from_millis(30));
    }

    #[test]
    fn polls_answer_the_first_answer_that_holds_or_the_last_one() -> TestResult {
        let mut n = 0;
        let counting = || {
            n += 1;
            Ok(n)
        };
        let held = poll_blocking(Duration::from_secs(5), counting, |n| *n == 3)?;
        assert_eq!(held, Polled::Held(3));
        let ran_out = poll_blocking(Duration::from_millis(30), || Ok(7), |_| false)?;
        assert_eq!(ran_out, Polled::TimedOut(7));
        assert!(
            poll_blocking(
                Duration::from_secs(1),
                || Err::<u8, _>("down".into()),
                |_| true
            )
            .is_err()
        );
        Ok(())
    }

    #[tokio::test]
    async fn within_fails_a_future_that_takes_too_long() {
        let slow = tokio::time::sleep(Duration::from_secs(5));
        let error = within(Duration::from_millis(20), "the sleep", slow)
            .await
            .expect_err("too slow");
        assert!(error.to_string().contains("the sleep"), "{error}");
        assert_eq!(
            within(Duration::from_secs(1), "ready", async { 7 })
                .await
                .ok(),
            Some(7)
        );
    }
}
