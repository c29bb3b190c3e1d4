//! Locks that outlive a panicking holder: the books they guard (counters, pool slots) stay
//! consistent between statements, so the client keeps working rather than poisoning.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, poisoned or not.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
