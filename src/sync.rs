//! Poison-tolerant locking shared by the layers' in-memory state.
//!
//! Every lock in this crate guards data that a panic elsewhere cannot leave
//! half-written (a map insert, a swapped `Arc`), so a poisoned lock is
//! recovered rather than turned into a panic on the request path.

use std::sync::{Mutex, MutexGuard, PoisonError};
#[cfg(feature = "jwks")]
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Locks `mutex`, recovering it if a panic poisoned it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Read-locks `lock`, recovering it if a panic poisoned it.
#[cfg(feature = "jwks")]
pub(crate) fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

/// Write-locks `lock`, recovering it if a panic poisoned it.
#[cfg(feature = "jwks")]
pub(crate) fn write<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}
