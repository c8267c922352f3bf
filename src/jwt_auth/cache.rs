//! The verified-token cache: serves the claims of a token verified before,
//! until its `exp` (or the configured TTL), without the signature check.
//! A [`TtlMap`] keyed by the full token, in Unix seconds; its eviction rule
//! (the oldest insert of a full shard goes) is the cache's.

use crate::ttl_map::TtlMap;

/// Shards reduce lock contention: at most this many (a power of two), and
/// never more than the capacity, so each shard holds at least one entry.
const MAX_SHARDS: usize = 16;

/// A bounded map from token to verified value, with the key-set generation
/// each token was verified under.
pub(crate) struct TokenCache<V> {
    map: TtlMap<Box<str>, (u64, V), i64>,
    ttl: Option<i64>,
}

impl<V: Clone> TokenCache<V> {
    /// A cache of at most `capacity` entries (at least one), each served at
    /// most `ttl` seconds when given.
    pub(crate) fn new(capacity: usize, ttl: Option<i64>) -> Self {
        Self {
            map: TtlMap::sharded(capacity.max(1), MAX_SHARDS),
            ttl,
        }
    }

    /// The value cached for exactly `token`, if still fresh and verified
    /// under `generation` (an entry of another generation is dropped).
    pub(crate) fn get(&self, token: &str, now: i64, generation: u64) -> Option<V> {
        match self.map.get(token, now) {
            Some((verified_under, value)) if verified_under == generation => Some(value),
            Some(_) => {
                self.map.remove(token);
                None
            }
            None => None,
        }
    }

    /// Caches `value` for `token` until `exp` (and at most the TTL).
    pub(crate) fn insert(&self, token: &str, exp: i64, now: i64, generation: u64, value: V) {
        let until = match self.ttl {
            Some(ttl) => exp.min(now.saturating_add(ttl)),
            None => exp,
        };
        if until > now {
            self.map
                .insert(token.into(), (generation, value), until, now);
        }
    }

    /// The number of cached tokens.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The most entries the cache holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.map.capacity()
    }
}

impl<V> std::fmt::Debug for TokenCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("map", &self.map)
            .field("ttl", &self.ttl)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Memory is bounded: never more entries than the capacity.
    #[test]
    fn never_holds_more_than_capacity() {
        let cache = TokenCache::new(64, None);
        for i in 0..10_000 {
            cache.insert(&format!("token-{i}"), 1_000, 0, 0, i);
        }
        assert!(cache.len() <= cache.capacity());
        assert_eq!(cache.capacity(), 64);
        // The newest is there.
        assert_eq!(cache.get("token-9999", 0, 0), Some(9999));
    }

    // Small capacities and capacities that are not a multiple of the shard
    // count are exact bounds too.
    #[test]
    fn any_capacity_is_an_exact_bound() {
        for capacity in (1..=40).chain([63, 100, 1000, 4095, 4096, 4097]) {
            let cache = TokenCache::new(capacity, None);
            assert_eq!(cache.capacity(), capacity);
            for i in 0..capacity * 4 + 64 {
                cache.insert(&format!("token-{i}"), 1_000, 0, 0, i);
                assert!(cache.len() <= capacity, "capacity {capacity}");
            }
            let last = capacity * 4 + 63;
            assert_eq!(cache.get(&format!("token-{last}"), 0, 0), Some(last));
        }
    }

    #[test]
    fn expired_and_other_generation_entries_are_not_served() {
        let cache = TokenCache::new(16, None);
        cache.insert("a", 100, 0, 7, 1);
        assert_eq!(cache.get("a", 99, 7), Some(1));
        assert_eq!(cache.get("a", 99, 8), None);
        cache.insert("a", 100, 0, 7, 1);
        assert_eq!(cache.get("a", 100, 7), None);
        // Nothing is stored for an already expired token.
        cache.insert("b", 5, 10, 0, 2);
        assert_eq!(cache.len(), 0);
    }

    #[test]
    fn ttl_caps_how_long_an_entry_is_served() {
        let cache = TokenCache::new(16, Some(30));
        cache.insert("a", 1_000, 0, 0, 1);
        assert_eq!(cache.get("a", 29, 0), Some(1));
        assert_eq!(cache.get("a", 30, 0), None);
    }

    // A hash collision never serves another token's value: the map compares
    // the full token (`ttl_map`'s `colliding_hashes_compare_the_full_key`).
    #[test]
    fn only_the_exact_token_is_served() {
        let cache = TokenCache::new(16, None);
        cache.insert("someone-else", 1_000, 0, 0, 42);
        assert_eq!(cache.get("mine", 0, 0), None);
        assert_eq!(cache.get("someone-else", 0, 0), Some(42));
    }
}
