//! Locking a std mutex that a panicking holder poisoned: the data is a cache or a count that
//! stays valid whatever the panic interrupted, so the guard is taken anyway.

use std::sync::{Mutex, MutexGuard};

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
