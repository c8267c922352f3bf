//! Purges and counters in code: [`ResponseCacheHandle`].

use std::fmt;
use std::sync::Arc;

use super::Config;
use super::engine::CacheStats;

/// A handle on one cache (from [`ResponseCacheLayer::handle`](super::ResponseCacheLayer::handle)):
/// purge by group or path, read the counters. Cheap to clone.
#[derive(Clone)]
pub struct ResponseCacheHandle {
    pub(super) config: Arc<Config>,
}

impl fmt::Debug for ResponseCacheHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCacheHandle")
            .field("stats", &self.stats())
            .finish()
    }
}

impl ResponseCacheHandle {
    pub(super) fn new(config: Arc<Config>) -> Self {
        Self { config }
    }

    /// Removes every entry in the group `name` (a `Cache-Groups` member,
    /// RFC 9875 §2); returns how many this process held. With a Redis
    /// tier, its entries there and on every replica go too, in the
    /// background.
    pub fn purge_group(&self, name: &str) -> usize {
        self.config.engine.purge_group(name)
    }

    /// Removes every entry of this path and query (`/products?page=2`):
    /// all its `Vary` variants and principals, as an unsafe method would
    /// (RFC 9111 §4.4); returns how many this process held (Redis and the
    /// other replicas as for [`purge_group`](Self::purge_group)).
    pub fn purge_path(&self, path_and_query: &str) -> usize {
        let (path, query) = match path_and_query.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (path_and_query, None),
        };
        let query = self.config.query.normalise(query);
        self.config.engine.purge_uri(path, &query)
    }

    /// Removes every entry.
    pub fn clear(&self) {
        self.config.engine.memory.clear();
    }

    /// What the cache did since it was built.
    pub fn stats(&self) -> CacheStats {
        self.config.engine.stats()
    }
}
