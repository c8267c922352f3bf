//! The deny cache: once Redis limited a key, its requests are denied
//! locally until their `Retry-After` passes, without a round trip.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::super::key::Key;
use super::super::store::Decision;

/// A remembered denial: until `retry_at`, requests of at least `cost` are
/// denied without asking Redis.
#[derive(Clone, Copy)]
struct Denied {
    retry_at: Instant,
    reset_at: Instant,
    remaining: u64,
    cost: u32,
}

/// The least time between two sweeps of a full deny cache for expired
/// entries: a sweep reads every entry under the lock, and clients choosing
/// many limited keys must not make every denial pay for one.
const DENY_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

pub(super) struct DenyCache {
    capacity: usize,
    pub(super) entries: Mutex<DenyEntries>,
}

#[derive(Default)]
pub(super) struct DenyEntries {
    map: HashMap<Key, Denied>,
    last_sweep: Option<Instant>,
    /// Sweeps so far.
    #[cfg(test)]
    pub(super) sweeps: u64,
}

impl DenyCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(DenyEntries::default()),
        }
    }

    pub(super) fn get(&self, key: &Key, cost: u32, now: Instant) -> Option<Decision> {
        let mut guard = crate::sync::lock(&self.entries);
        let entries = &mut guard.map;
        let entry = *entries.get(key)?;
        if now >= entry.retry_at {
            entries.remove(key);
            return None;
        }
        (cost >= entry.cost).then(|| {
            Decision::denied(
                entry.remaining,
                entry.reset_at.saturating_duration_since(now),
                entry.retry_at - now,
            )
        })
    }

    pub(super) fn insert(&self, key: Key, cost: u32, decision: &Decision, now: Instant) {
        if decision.retry_after().is_zero() {
            return;
        }
        let mut guard = crate::sync::lock(&self.entries);
        let state = &mut *guard;
        if state.map.len() >= self.capacity && !state.map.contains_key(&key) {
            // Full: drop the expired entries, at most once per interval...
            if state
                .last_sweep
                .is_none_or(|last| now.saturating_duration_since(last) >= DENY_SWEEP_INTERVAL)
            {
                state.map.retain(|_, e| e.retry_at > now);
                state.last_sweep = Some(now);
                #[cfg(test)]
                {
                    state.sweeps += 1;
                }
            }
            // ...and else any one entry: the newest denial is the likeliest
            // to be asked about again, and the work stays constant.
            if state.map.len() >= self.capacity
                && let Some(victim) = state.map.keys().next().copied()
            {
                state.map.remove(&victim);
            }
        }
        state.map.insert(
            key,
            Denied {
                retry_at: now + decision.retry_after(),
                reset_at: now + decision.reset(),
                remaining: decision.remaining(),
                cost,
            },
        );
    }

    pub(super) fn remove(&self, key: &Key) {
        let mut entries = crate::sync::lock(&self.entries);
        if !entries.map.is_empty() {
            entries.map.remove(key);
        }
    }

    pub(super) fn len(&self) -> usize {
        crate::sync::lock(&self.entries).map.len()
    }
}
