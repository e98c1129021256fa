//! `std` mutexes used whether or not a panic poisoned them, in one place.
//! What they guard (a handle taken or put back whole, a list of listeners)
//! is never half-changed at a point where a panic could stop its holder,
//! so a poisoned lock says nothing about the data: refusing it would only
//! turn one panic into many.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The data of a `mutex` no one else has any more.
pub(crate) fn into_inner<T>(mutex: Mutex<T>) -> T {
    mutex.into_inner().unwrap_or_else(PoisonError::into_inner)
}
