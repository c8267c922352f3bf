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
    /// Requests that bypassed the cache because Redis failed.
    pub redis_bypassed: u64,
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
    #[cfg(feature = "redis")]
    pub(crate) remote: Option<Arc<super::remote::RemoteTier>>,
}

impl Engine {
    pub(crate) fn new(max_memory_bytes: usize) -> Self {
        Self {
            memory: MemoryTier::new(max_memory_bytes),
            flights: Arc::default(),
            hasher: KeyHasher::random(),
            counters: Counters::default(),
            #[cfg(feature = "redis")]
            remote: None,
        }
    }

    /// Whether a Redis tier is configured.
    pub(crate) fn has_remote(&self) -> bool {
        #[cfg(feature = "redis")]
        return self.remote.is_some();
        #[cfg(not(feature = "redis"))]
        false
    }

    /// Stores a complete entry; in Redis too with `remote_token` (the
    /// fill lease's token, 0 without one).
    pub(crate) fn store(&self, entry: Entry, remote_token: Option<u64>) {
        #[cfg(feature = "redis")]
        if let (Some(remote), Some(token)) = (&self.remote, remote_token) {
            remote.spawn_store(&entry, token);
        }
        #[cfg(not(feature = "redis"))]
        let _ = remote_token;
        self.memory.insert(Arc::new(entry));
        Counters::add(&self.counters.stored);
    }

    /// Removes the entries of group `name` (RFC 9875) here, and in Redis
    /// and on every replica in the background.
    pub(crate) fn purge_group(&self, name: &str) -> usize {
        self.purge_remote(format!("g:{name}"));
        self.purge_group_hash(self.hasher.group(name))
    }

    /// Removes the entries of a URI (every variant and principal), here,
    /// and in Redis and on every replica in the background.
    pub(crate) fn purge_uri(&self, path: &str, query: &str) -> usize {
        #[cfg(feature = "redis")]
        if self.remote.is_some() {
            self.purge_remote(super::remote::uri_group_name(path, query));
        }
        self.purge_group_hash(self.hasher.uri(path, query))
    }

    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    fn purge_remote(&self, group: String) {
        #[cfg(feature = "redis")]
        if let Some(remote) = &self.remote
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let remote = Arc::clone(remote);
            runtime.spawn(async move {
                let _ = remote.purge(&group).await;
            });
        }
    }

    /// Applies a purge published by a replica (`g:<name>` or
    /// `u:<path>?<query>`) to the memory tier.
    #[cfg(feature = "redis")]
    pub(crate) fn purge_local(&self, message: &str) {
        if let Some(name) = message.strip_prefix("g:") {
            self.purge_group_hash(self.hasher.group(name));
        } else if let Some(uri) = message.strip_prefix("u:")
            && let Some((path, query)) = uri.split_once('?')
        {
            self.purge_group_hash(self.hasher.uri(path, query));
        }
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
            #[cfg(feature = "redis")]
            redis_bypassed: self
                .remote
                .as_ref()
                .map_or(0, |r| r.bypassed.load(Ordering::Relaxed)),
            #[cfg(not(feature = "redis"))]
            redis_bypassed: 0,
        }
    }
}
