//! The deny cache: once Redis limited a key, its requests are denied
//! locally until their `Retry-After` passes, without a round trip.
//!
//! A bounded [`TtlMap`](crate::ttl_map::TtlMap) keyed by policy and key:
//! each denial expires at its `Retry-After`; when full, an insert drops the
//! expired denials at the front of a shard and then its oldest one, in
//! constant work, so clients choosing many limited keys cannot make a
//! denial scan the cache.

use std::time::Instant;

use super::super::key::Key;
use super::super::store::Decision;
use crate::ttl_map::TtlMap;

/// Shards of a large cache: denials under a flood come from many threads.
const MAX_SHARDS: usize = 8;
/// Entries per shard at least: a small cache keeps one shard, so its
/// eviction rule (oldest first) holds across the whole cache.
const MIN_SHARD_CAPACITY: usize = 1024;

/// A remembered denial: until it expires (its `Retry-After`), requests of
/// at least `cost` are denied without asking Redis.
#[derive(Clone, Copy)]
struct Denied {
    retry_at: Instant,
    reset_at: Instant,
    remaining: u64,
    cost: u32,
}

pub(super) struct DenyCache {
    map: TtlMap<Key, Denied, Instant>,
}

impl DenyCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            map: TtlMap::sharded(
                capacity,
                (capacity / MIN_SHARD_CAPACITY).clamp(1, MAX_SHARDS),
            ),
        }
    }

    pub(super) fn get(&self, key: &Key, cost: u32, now: Instant) -> Option<Decision> {
        let entry = self.map.get(key, now)?;
        (cost >= entry.cost).then(|| {
            Decision::denied(
                entry.remaining,
                entry.reset_at.saturating_duration_since(now),
                entry.retry_at.saturating_duration_since(now),
            )
        })
    }

    pub(super) fn insert(&self, key: Key, cost: u32, decision: &Decision, now: Instant) {
        let retry_at = now + decision.retry_after();
        let denied = Denied {
            retry_at,
            reset_at: now + decision.reset(),
            remaining: decision.remaining(),
            cost,
        };
        // Nothing is stored when `retry_at <= now` (no wait to remember).
        self.map.insert(key, denied, retry_at, now);
    }

    pub(super) fn remove(&self, key: &Key) {
        self.map.remove(key);
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}
