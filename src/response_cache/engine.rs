//! The cache engine one layer's services share: the memory tier, the
//! fills in progress, the key hasher and the counters.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::entry::Entry;
use super::flight::Flights;
use super::key::KeyHasher;
use super::memory::MemoryTier;

/// Counters of what the cache did since it was built; read with
/// [`ResponseCacheHandle::stats`](super::ResponseCacheHandle::stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Requests answered from a fresh entry (304s included).
    pub hits: u64,
    /// Requests forwarded to the handler for want of a usable entry.
    pub misses: u64,
    /// Stale entries served (`stale-while-revalidate`, `stale-if-error`).
    pub stale_served: u64,
    /// Requests that waited for another request's fill and got its entry.
    pub collapsed: u64,
    /// Responses stored.
    pub stored: u64,
    /// Entries evicted to keep the memory tier within its bytes.
    pub evicted: u64,
    /// Entries removed by invalidation (unsafe methods, groups, purges).
    pub invalidated: u64,
    /// Bytes the memory tier holds now.
    pub bytes: u64,
    /// Entries the memory tier holds now.
    pub entries: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) stale_served: AtomicU64,
    pub(crate) collapsed: AtomicU64,
    pub(crate) stored: AtomicU64,
    pub(crate) invalidated: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) memory: MemoryTier,
    pub(crate) flights: Arc<Flights>,
    pub(crate) hasher: KeyHasher,
    pub(crate) counters: Counters,
}

impl Engine {
    pub(crate) fn new(max_memory_bytes: usize) -> Self {
        Self {
            memory: MemoryTier::new(max_memory_bytes),
            flights: Arc::default(),
            hasher: KeyHasher::random(),
            counters: Counters::default(),
        }
    }

    /// Stores a complete entry.
    pub(crate) fn store(&self, entry: Entry) {
        self.memory.insert(entry);
        Counters::add(&self.counters.stored);
    }

    /// Removes the entries of the group with this hash.
    pub(crate) fn purge_group_hash(&self, group: u64) -> usize {
        let removed = self.memory.purge_group(group);
        self.counters
            .invalidated
            .fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    pub(crate) fn stats(&self) -> CacheStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: load(&c.hits),
            misses: load(&c.misses),
            stale_served: load(&c.stale_served),
            collapsed: load(&c.collapsed),
            stored: load(&c.stored),
            evicted: self.memory.evicted(),
            invalidated: load(&c.invalidated),
            bytes: self.memory.bytes(),
            entries: self.memory.len() as u64,
        }
    }
}
