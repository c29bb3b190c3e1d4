//! The board between the control plane and the workers, which the handle and every worker
//! share: the stop flag, the current pool, where workers publish their stats and answers, and
//! a waker per worker.
//!
//! Workers read two atomics between batches (the pool version and the stats generation
//! wanted), which only the control plane writes, rarely; nothing is written by every worker
//! per datagram. A change is published, then every worker is woken, so an idle worker picks it
//! up at once and a busy one after its current round of batches; the control plane waits
//! until every worker has answered on the board.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mio::Waker;
use qlb_router::Pool;

use super::stats::Stats;
use crate::sync::lock;

/// The board: what the control plane posts (stop, pool, stats wanted) and what each worker
/// answers on it.
#[derive(Debug)]
pub(crate) struct Board {
    stop: AtomicBool,
    pool_version: AtomicU64,
    pool: Mutex<Arc<Pool>>,
    stats_wanted: AtomicU64,
    board: Mutex<Vec<Published>>,
    published: Condvar,
    wakers: Vec<Waker>,
}

/// One worker's place on the board.
#[derive(Debug, Default)]
struct Published {
    /// The pool version it routes with.
    pool_version: u64,
    /// The latest stats generation it has published.
    generation: u64,
    /// Gone (stopped or failed): its last stats stand, nobody waits for it.
    retired: bool,
    stats: Stats,
}

impl Board {
    /// Shared state for workers woken by `wakers` (one each, in worker order).
    pub(crate) fn new(pool: Arc<Pool>, wakers: Vec<Waker>) -> Self {
        Self {
            stop: AtomicBool::new(false),
            pool_version: AtomicU64::new(0),
            pool: Mutex::new(pool),
            stats_wanted: AtomicU64::new(0),
            board: Mutex::new(wakers.iter().map(|_| Published::default()).collect()),
            published: Condvar::new(),
            wakers,
        }
    }

    /// Asks every worker to stop.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.wake_all();
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Publishes `pool` for every worker and waits (at most `timeout`) until every running
    /// worker routes with it.
    pub(crate) fn set_pool(&self, pool: Arc<Pool>, timeout: Duration) {
        let version = {
            let mut current = lock(&self.pool);
            *current = pool;
            self.pool_version.fetch_add(1, Ordering::AcqRel) + 1
        };
        self.wake_all();
        drop(self.wait(timeout, |p| p.pool_version >= version));
    }

    /// The current pool.
    pub(crate) fn pool(&self) -> Arc<Pool> {
        Arc::clone(&lock(&self.pool))
    }

    /// Bumped by every [`Board::set_pool`].
    pub(crate) fn pool_version(&self) -> u64 {
        self.pool_version.load(Ordering::Acquire)
    }

    /// Asks every worker for fresh stats and sums what they publish, waiting at most
    /// `timeout` for workers that do not answer.
    pub(crate) fn stats(&self, timeout: Duration) -> Stats {
        let wanted = self.stats_wanted.fetch_add(1, Ordering::AcqRel) + 1;
        self.wake_all();
        let board = self.wait(timeout, |p| p.generation >= wanted);
        let mut total = Stats::default();
        for published in board.iter() {
            total.merge(&published.stats);
        }
        total
    }

    /// Waits until `answered` holds for every running worker, or `timeout` has passed.
    fn wait(
        &self,
        timeout: Duration,
        answered: impl Fn(&Published) -> bool,
    ) -> MutexGuard<'_, Vec<Published>> {
        let deadline = Instant::now() + timeout;
        let mut board = lock(&self.board);
        while !board.iter().all(|p| p.retired || answered(p)) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            board = self
                .published
                .wait_timeout(board, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        board
    }

    /// The stats generation workers should have published.
    pub(crate) fn stats_wanted(&self) -> u64 {
        self.stats_wanted.load(Ordering::Acquire)
    }

    /// Worker `worker` routes with pool `version` now.
    pub(crate) fn pool_taken_up(&self, worker: usize, version: u64) {
        if let Some(published) = lock(&self.board).get_mut(worker) {
            published.pool_version = version;
        }
        self.published.notify_all();
    }

    /// Worker `worker`'s stats as of `generation`.
    pub(crate) fn publish(&self, worker: usize, generation: u64, stats: Stats) {
        if let Some(published) = lock(&self.board).get_mut(worker) {
            published.generation = generation;
            published.stats = stats;
        }
        self.published.notify_all();
    }

    /// Worker `worker` is gone; its last published stats stand.
    pub(crate) fn retire(&self, worker: usize) {
        if let Some(published) = lock(&self.board).get_mut(worker) {
            published.retired = true;
        }
        self.published.notify_all();
    }

    fn wake_all(&self) {
        for waker in &self.wakers {
            // Fails only when the worker's poll is gone, and then there is nobody to wake.
            waker.wake().ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board(workers: usize) -> (Arc<Board>, Vec<mio::Poll>) {
        let polls: Vec<mio::Poll> = (0..workers)
            .map(|_| mio::Poll::new().expect("poll"))
            .collect();
        let wakers = polls
            .iter()
            .map(|p| Waker::new(p.registry(), mio::Token(0)).expect("waker"))
            .collect();
        let pool = Arc::new(Pool::new(quic_lb::Decoder::new(), []).expect("pool"));
        (Arc::new(Board::new(pool, wakers)), polls)
    }

    #[test]
    fn stats_wait_for_every_running_worker_and_sum_them() {
        let (board, _polls) = board(2);
        let worker = {
            let board = Arc::clone(&board);
            std::thread::spawn(move || {
                // Worker 0 answers each request; worker 1 has retired.
                board.retire(1);
                let mut answered = 0;
                while answered < 2 {
                    let wanted = board.stats_wanted();
                    if wanted > answered {
                        let mut stats = Stats::default();
                        stats.flows_created = wanted;
                        board.publish(0, wanted, stats);
                        answered = wanted;
                    }
                    std::thread::yield_now();
                }
            })
        };
        assert_eq!(board.stats(Duration::from_secs(30)).flows_created, 1);
        assert_eq!(board.stats(Duration::from_secs(30)).flows_created, 2);
        worker.join().expect("worker");
    }

    #[test]
    fn stats_give_up_on_silent_workers_after_the_timeout() {
        let (board, _polls) = board(1);
        let mut stats = Stats::default();
        stats.flows_expired = 7;
        board.publish(0, 0, stats);
        let stale = board.stats(Duration::from_millis(10));
        assert_eq!(stale.flows_expired, 7);
    }

    #[test]
    fn pool_changes_wake_workers_and_wait_for_them() {
        let (board, mut polls) = board(1);
        let bigger = Pool::new(
            quic_lb::Decoder::new(),
            [qlb_router::Backend::new(
                "a",
                "192.0.2.1:443".parse().expect("addr"),
            )],
        )
        .expect("pool");
        let mut poll = polls.remove(0);
        let worker = {
            let board = Arc::clone(&board);
            std::thread::spawn(move || {
                let mut events = mio::Events::with_capacity(4);
                poll.poll(&mut events, Some(Duration::from_secs(30)))
                    .expect("poll");
                let woken: Vec<mio::Token> = events.iter().map(|e| e.token()).collect();
                let version = board.pool_version();
                let backends = board.pool().backends().len();
                board.pool_taken_up(0, version);
                (woken, version, backends)
            })
        };
        board.set_pool(Arc::new(bigger), Duration::from_secs(30));
        // set_pool has returned: the worker has answered.
        let (woken, version, backends) = worker.join().expect("worker");
        assert_eq!((woken, version, backends), (vec![mio::Token(0)], 1, 1));
        board.stop();
        assert!(board.stopping());
    }

    #[test]
    fn pool_changes_do_not_wait_for_retired_workers() {
        let (board, _polls) = board(2);
        board.retire(0);
        board.retire(1);
        let empty = Pool::new(quic_lb::Decoder::new(), []).expect("pool");
        board.set_pool(Arc::new(empty), Duration::from_secs(30));
        assert_eq!(board.pool_version(), 1);
    }
}
