//! Steady load for the balancing tests: workers send `/whoami` back to back, each result
//! recorded with its time; bounded in count, stopped by the test.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use qlb_client::Client;
use tokio::task::JoinHandle;

use super::whoami;

/// One request: when it ended, and the backend's name or the error.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub at: Instant,
    pub result: Result<String, String>,
}

/// Workers sending requests until stopped or `max` requests in all.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    workers: Vec<JoinHandle<()>>,
}

impl Load {
    pub(crate) fn start(client: &Client, workers: usize, max: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let sent = Arc::new(AtomicUsize::new(0));
        let workers = (0..workers)
            .map(|_| {
                let (client, stop, outcomes, sent) =
                    (client.clone(), stop.clone(), outcomes.clone(), sent.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::SeqCst) && sent.fetch_add(1, Ordering::SeqCst) < max
                    {
                        let result = whoami(&client).await.map_err(|err| err.to_string());
                        let outcome = Outcome {
                            at: Instant::now(),
                            result,
                        };
                        outcomes
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(outcome);
                    }
                })
            })
            .collect();
        Self {
            stop,
            outcomes,
            workers,
        }
    }

    /// The outcomes so far.
    pub(crate) fn outcomes(&self) -> Vec<Outcome> {
        self.outcomes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Stops the workers, waits for their last requests, returns every outcome.
    pub(crate) async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::SeqCst);
        let outcomes = self.outcomes.clone();
        for worker in self.workers {
            let _ = worker.await;
        }
        let outcomes = outcomes.lock().unwrap_or_else(PoisonError::into_inner);
        outcomes.clone()
    }
}

/// Requests per backend name among `outcomes` that ended in `[from, to)`.
pub(crate) fn shares(outcomes: &[Outcome], from: Instant, to: Instant) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for outcome in outcomes.iter().filter(|o| o.at >= from && o.at < to) {
        if let Ok(name) = &outcome.result {
            *counts.entry(name.clone()).or_default() += 1;
        }
    }
    counts
}

/// The errors among `outcomes`.
pub(crate) fn errors(outcomes: &[Outcome]) -> Vec<String> {
    outcomes
        .iter()
        .filter_map(|o| o.result.clone().err())
        .collect()
}
