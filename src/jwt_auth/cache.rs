//! The verified-token cache: serves the claims of a token verified before,
//! until its `exp` (or the configured TTL), without the signature check.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use std::sync::{Arc, Mutex, MutexGuard};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Shards reduce lock contention: at most this many (a power of two), and
/// never more than the capacity, so each shard holds at least one entry.
const MAX_SHARDS: usize = 16;

/// The key is already a seeded hash: the map uses it as is.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _bytes: &[u8]) {
        unreachable!("only u64 keys")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Map<V> = HashMap<u64, Entry<V>, BuildHasherDefault<IdentityHasher>>;

struct Entry<V> {
    /// The full token: a hit compares it, so a hash collision never serves
    /// another token's claims.
    token: Box<str>,
    /// Served while `now < until` (Unix seconds).
    until: i64,
    /// The key-set generation the token was verified under.
    generation: u64,
    value: V,
}

struct Shard<V> {
    map: Map<V>,
    /// The most entries this shard holds; the limits add up to the
    /// cache's capacity.
    limit: usize,
    /// When expired entries were last swept (Unix seconds).
    swept: i64,
}

/// A bounded map from token to verified value.
pub(crate) struct TokenCache<V> {
    /// A random seed per cache, so a client cannot aim tokens at one slot.
    seed: u64,
    shards: Box<[Mutex<Shard<V>>]>,
    /// `shards.len() - 1` (the count is a power of two).
    shard_mask: usize,
    capacity: usize,
    ttl: Option<i64>,
}

impl<V: Clone> TokenCache<V> {
    /// A cache of at most `capacity` entries (at least one), each served at
    /// most `ttl` seconds when given.
    pub(crate) fn new(capacity: usize, ttl: Option<i64>) -> Self {
        let capacity = capacity.max(1);
        // The largest power of two up to both the capacity and MAX_SHARDS;
        // the capacity is split exactly: the first `capacity % count`
        // shards hold one entry more than the others.
        let count = MAX_SHARDS.min(1 << capacity.ilog2());
        let (base, extra) = (capacity / count, capacity % count);
        let shards = (0..count)
            .map(|i| {
                Mutex::new(Shard {
                    map: Map::default(),
                    limit: base + usize::from(i < extra),
                    swept: i64::MIN,
                })
            })
            .collect();
        Self {
            seed: RandomState::new().hash_one(0x6a77_745f_6361_6368_u64),
            shards,
            shard_mask: count - 1,
            capacity,
            ttl,
        }
    }

    /// XXH3 (tens of GB/s) with the cache's random seed: a hit costs a
    /// few tens of nanoseconds of hashing even for long tokens.
    fn hash(&self, token: &str) -> u64 {
        xxh3_64_with_seed(token.as_bytes(), self.seed)
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard<V>> {
        // Middle bits pick the shard: the map's bucket index uses the low
        // bits and its control bytes the top seven, so both keep their
        // full entropy inside a shard.
        let index = (hash >> 32) as usize & self.shard_mask;
        // A poisoned shard only means a panic elsewhere mid-insert; the map
        // itself is still consistent.
        crate::sync::lock(&self.shards[index])
    }

    /// The value cached for exactly `token`, if still fresh and verified
    /// under `generation`.
    pub(crate) fn get(&self, token: &str, now: i64, generation: u64) -> Option<V> {
        let hash = self.hash(token);
        let mut shard = self.shard(hash);
        let entry = shard.map.get(&hash)?;
        if *entry.token != *token {
            return None;
        }
        if now < entry.until && entry.generation == generation {
            return Some(entry.value.clone());
        }
        shard.map.remove(&hash);
        None
    }

    /// Caches `value` for `token` until `exp` (and at most the TTL).
    pub(crate) fn insert(&self, token: &str, exp: i64, now: i64, generation: u64, value: V) {
        let until = match self.ttl {
            Some(ttl) => exp.min(now.saturating_add(ttl)),
            None => exp,
        };
        if until <= now {
            return;
        }
        let hash = self.hash(token);
        let mut shard = self.shard(hash);
        if shard.map.len() >= shard.limit && !shard.map.contains_key(&hash) {
            // Sweep expired entries at most once a second, then, if still
            // full, evict an arbitrary entry (the hash order is random).
            if shard.swept < now {
                shard.swept = now;
                shard.map.retain(|_, e| now < e.until);
            }
            if shard.map.len() >= shard.limit
                && let Some(&victim) = shard.map.keys().next()
            {
                shard.map.remove(&victim);
            }
        }
        shard.map.insert(
            hash,
            Entry {
                token: token.into(),
                until,
                generation,
                value,
            },
        );
    }

    /// The number of cached tokens.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| crate::sync::lock(s).map.len())
            .sum()
    }

    /// The most entries the cache holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.shards.iter().map(|s| crate::sync::lock(s).limit).sum()
    }

    #[cfg(test)]
    /// Stores `value` under `token`'s slot but with another token, as a
    /// hash collision would.
    pub(crate) fn insert_colliding(&self, token: &str, other: &str, until: i64, value: V) {
        let hash = self.hash(token);
        self.shard(hash).map.insert(
            hash,
            Entry {
                token: other.into(),
                until,
                generation: 0,
                value,
            },
        );
    }
}

impl<V> std::fmt::Debug for TokenCache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("capacity", &self.capacity)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The cached value: everything the layer inserts into the extensions.
pub(crate) type Cached<T> = Arc<super::Authenticated<T>>;

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

    // A hash collision never serves another token's value.
    #[test]
    fn collision_compares_the_full_token() {
        let cache = TokenCache::new(16, None);
        cache.insert_colliding("mine", "someone-else", 1_000, 42);
        assert_eq!(cache.get("mine", 0, 0), None);
        assert_eq!(
            cache.get("someone-else", 0, 0),
            None,
            "stored under another hash"
        );
    }
}
