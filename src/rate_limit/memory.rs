//! The in-memory store: GCRA state in a sharded hash map, bounded.

use std::fmt;
use std::sync::Mutex;

use crate::sync::lock;
use std::time::Duration;

use super::key::Key;
use super::store::{Check, Clock, MonotonicClock, RateLimitStore, StoreFuture, gcra_nanos};

/// The default cap on tracked keys per store.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// How often, at most, a shard drops the keys whose bucket is full again.
pub const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

const MAX_SHARDS: usize = 64;

/// The fewest keys a shard holds when the store has more than one shard.
/// Each shard evicts on its own, so a shard needs room for its share of
/// the active clients plus the unevenness of hashing; 256 keeps that
/// unevenness small (a few per cent) and gives the default cap its 64
/// shards.
const MIN_KEYS_PER_SHARD: usize = 256;

/// (key, TAT) entries, found by the hash the store computed once for the
/// shard (hashbrown's `HashTable`: no second hashing of the key).
type Map = hashbrown::HashTable<(Key, u64)>;

struct Shard {
    /// Key → TAT in nanoseconds on the store's clock.
    map: Map,
    last_sweep: u64,
}

/// A shard's lock and table header on cache lines of their own (128 bytes:
/// adjacent-line prefetching pairs 64-byte lines), so threads working on
/// neighbouring shards do not invalidate each other's lines.
#[repr(align(128))]
struct PaddedShard(Mutex<Shard>);

/// GCRA state in memory, shared by every clone of the service that holds it
/// (the layer keeps it behind one `Arc`).
///
/// Keys live in up to 64 shards (fewer for a small cap: see
/// [Bounded memory](#bounded-memory)), each a small hash table (hashbrown's
/// `HashTable`; each key hashed once with foldhash, seeded per process, for
/// both the shard and the table) behind a `std` mutex held only for the
/// arithmetic: no lock
/// is ever held across an `.await`, and the hot path is one hash, one
/// uncontended lock, one lookup and a few integer operations — no
/// allocation, no boxing.
///
/// # Bounded memory
///
/// * **Amortised cleanup, no background task.** When a shard gains a key and
///   has not been swept for [`sweep_interval`](MemoryStoreBuilder::sweep_interval)
///   (10 s by default), it drops every key whose TAT has passed. Such a key's
///   bucket is full: forgetting it changes no decision. Idle shards do not
///   grow, so they need no sweep. [`MemoryStore::retain_recent`] does the
///   same for all shards on demand.
/// * **Hard cap.** At most [`max_keys`](MemoryStoreBuilder::max_keys)
///   (default [`DEFAULT_MAX_KEYS`]) keys are tracked, split evenly across
///   the shards. The store has as many shards as it can, up to 64 and a
///   power of two, while giving each at least 256 keys: 64 shards for the
///   default cap, 1 shard for a cap below 512. A shard that is full when a new key arrives first drops
///   its expired keys; if that frees nothing it evicts the quarter of its keys
///   closest to a full bucket (smallest TAT). An evicted key gets a fresh
///   bucket when it comes back — the least information to lose. A key costs
///   32 bytes plus hash-table overhead (about 40–75 bytes), so the default
///   cap stays under 8 MB per policy. Choose a cap
///   above your number of concurrently active clients; [`MemoryStore::len`]
///   (and the layer's `tracked_keys`) shows where you stand.
pub struct MemoryStore<C = MonotonicClock> {
    shards: Box<[PaddedShard]>,
    hasher: foldhash::fast::RandomState,
    shard_cap: usize,
    sweep_interval: u64,
    clock: C,
}

impl<C> fmt::Debug for MemoryStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.shards.len())
            .field("max_keys", &(self.shard_cap * self.shards.len()))
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the default cap and the monotonic clock.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to set the cap, sweep interval or clock.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_keys: DEFAULT_MAX_KEYS,
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
            clock: MonotonicClock::default(),
        }
    }
}

/// Builds a [`MemoryStore`]; from [`MemoryStore::builder`].
#[derive(Debug)]
pub struct MemoryStoreBuilder<C = MonotonicClock> {
    max_keys: usize,
    sweep_interval: Duration,
    clock: C,
}

impl<C: Clock> MemoryStoreBuilder<C> {
    /// The most keys tracked at once (default [`DEFAULT_MAX_KEYS`]; at
    /// least 1: 0 fails when the store is built). The cap also sets the
    /// number of shards (see [`MemoryStore`]).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// How often, at most, a growing shard drops expired keys (default
    /// [`DEFAULT_SWEEP_INTERVAL`]).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval;
        self
    }

    /// The store's time line (default [`MonotonicClock`]); see [`Clock`].
    pub fn clock<C2: Clock>(self, clock: C2) -> MemoryStoreBuilder<C2> {
        MemoryStoreBuilder {
            max_keys: self.max_keys,
            sweep_interval: self.sweep_interval,
            clock,
        }
    }

    /// The store.
    ///
    /// # Panics
    ///
    /// When `max_keys` is 0; use [`try_build`](Self::try_build) to get a
    /// [`ConfigError`](crate::ConfigError) instead.
    pub fn build(self) -> MemoryStore<C> {
        self.try_build().unwrap_or_else(|e| panic!("{e}"))
    }

    /// The store, or an error naming the field that is wrong.
    ///
    /// # Errors
    ///
    /// `max_keys` of 0.
    pub fn try_build(self) -> Result<MemoryStore<C>, crate::ConfigError> {
        if self.max_keys == 0 {
            return Err(crate::ConfigError::new("max_keys", "must be at least 1"));
        }
        let shards = shard_count(self.max_keys);
        let shard_cap = self.max_keys / shards;
        let hasher = foldhash::fast::RandomState::default();
        Ok(MemoryStore {
            shards: (0..shards)
                .map(|_| {
                    PaddedShard(Mutex::new(Shard {
                        map: Map::new(),
                        last_sweep: 0,
                    }))
                })
                .collect(),
            hasher,
            shard_cap,
            sweep_interval: u64::try_from(self.sweep_interval.as_nanos()).unwrap_or(u64::MAX),
            clock: self.clock,
        })
    }
}

/// The most shards, up to [`MAX_SHARDS`] and a power of two (the shard
/// index is a mask), that each get at least [`MIN_KEYS_PER_SHARD`] keys of
/// `max_keys`; 1 for a smaller cap.
fn shard_count(max_keys: usize) -> usize {
    let fit = (max_keys / MIN_KEYS_PER_SHARD).clamp(1, MAX_SHARDS);
    // The largest power of two not above `fit`.
    1 << fit.ilog2()
}

impl<C: Clock> MemoryStore<C> {
    /// Counts `cost` cells for `key` under `quota` if allowed: the
    /// synchronous form of [`RateLimitStore::check`].
    pub fn check_now(&self, key: &Key, quota: &super::Quota, cost: u32) -> super::store::Decision {
        use std::hash::BuildHasher;
        let hash = self.hasher.hash_one(key);
        // Middle bits pick the shard. Each shard's map hashes with the same
        // hasher, and hashbrown takes the bucket from the low bits and its
        // 7-bit control tag from the top bits: picking the shard from
        // either would make them nearly constant within a shard (clustered
        // buckets, or tags that match most slots).
        let index = (hash >> 32) as usize & (self.shards.len() - 1);
        let now = nanos(self.clock.now());
        let mut shard = lock(&self.shards[index].0);
        if let Some((_, slot)) = shard.map.find_mut(hash, |(k, _)| k == key) {
            let (decision, new_tat) = gcra_nanos(Some(*slot), now, quota, cost);
            if let Some(new_tat) = new_tat {
                *slot = new_tat;
            }
            return decision;
        }
        let (decision, new_tat) = gcra_nanos(None, now, quota, cost);
        if let Some(new_tat) = new_tat {
            self.make_room(&mut shard, now);
            let hasher = &self.hasher;
            shard
                .map
                .insert_unique(hash, (*key, new_tat), |(k, _)| hasher.hash_one(k));
        }
        decision
    }

    fn make_room(&self, shard: &mut Shard, now: u64) {
        let due = now.saturating_sub(shard.last_sweep) >= self.sweep_interval;
        if due || shard.map.len() >= self.shard_cap {
            shard.map.retain(|(_, tat)| *tat > now);
            shard.last_sweep = now;
        }
        if shard.map.len() >= self.shard_cap {
            // Still full: evict the quarter closest to a full bucket.
            let evict = (self.shard_cap / 4).max(1);
            let mut tats: Vec<u64> = shard.map.iter().map(|(_, tat)| *tat).collect();
            let (below, threshold, _) = tats.select_nth_unstable(evict - 1);
            let threshold = *threshold;
            // Remove exactly `evict` keys: all below the threshold, then
            // as many at the threshold as needed (ties are common).
            let mut ties = evict - below.iter().filter(|t| **t < threshold).count();
            shard.map.retain(|(_, tat)| {
                if *tat < threshold {
                    false
                } else if *tat == threshold && ties > 0 {
                    ties -= 1;
                    false
                } else {
                    true
                }
            });
            tracing::debug!(
                evicted = evict,
                cap = self.shard_cap,
                "rate-limit memory store full: evicted the keys nearest a full bucket"
            );
        }
    }

    /// Drops every key whose bucket is full again (TAT passed) in all
    /// shards. The store also does this by itself, amortised on the request
    /// path; call it if you want memory back sooner.
    pub fn retain_recent(&self) {
        let now = nanos(self.clock.now());
        for shard in &self.shards {
            let mut shard = lock(&shard.0);
            shard.map.retain(|(_, tat)| *tat > now);
            shard.last_sweep = now;
        }
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(&s.0).map.len()).sum()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most keys tracked at once (the cap, rounded down to a multiple
    /// of the shard count).
    pub fn max_keys(&self) -> usize {
        self.shard_cap * self.shards.len()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl<C: Clock> RateLimitStore for MemoryStore<C> {
    fn check(&self, check: Check<'_>) -> StoreFuture {
        StoreFuture::ready(Ok(self.check_now(check.key, check.quota, check.cost)))
    }

    fn len(&self) -> Option<usize> {
        Some(MemoryStore::len(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rate_limit::Quota;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn manual_clock() -> (Arc<AtomicU64>, impl Clock) {
        let now = Arc::new(AtomicU64::new(0));
        let c = Arc::clone(&now);
        (now, move || Duration::from_nanos(c.load(Ordering::SeqCst)))
    }

    // Per-key memory is bounded under hostile input (the limiter must not be
    // the resource a flood exhausts, draft-ietf-httpapi-ratelimit-headers-11
    // §8.1): hard cap on keys. 1M distinct keys, none of which expires (slow
    // quota), never exceed the cap.
    #[test]
    fn a_million_keys_stay_under_the_cap() {
        let (_, clock) = manual_clock();
        let store = MemoryStore::builder().max_keys(10_000).clock(clock).build();
        let quota = Quota::per_hour(10);
        for i in 0..1_000_000u64 {
            assert!(store.check_now(&Key::from_u64(i), &quota, 1).is_allowed());
        }
        let len = store.len();
        assert!(len <= 10_000, "{len}");
        assert!(
            len >= 10_000 * 3 / 4 - 64,
            "evicts only what it must: {len}"
        );
    }

    fn tracked<C: Clock>(store: &MemoryStore<C>, key: u64) -> bool {
        let key = Key::from_u64(key);
        store
            .shards
            .iter()
            .any(|shard| lock(&shard.0).map.iter().any(|(k, _)| *k == key))
    }

    // Eviction drops the keys closest to a full bucket (the smallest TAT,
    // GCRA), so recently active clients keep their state and stale
    // ones go. Keys arrive a second apart (distinct TATs); an old key is
    // used again; then one more key overflows the store.
    #[test]
    fn eviction_keeps_recently_active_keys_and_drops_stale_ones() {
        let (now, clock) = manual_clock();
        let store = MemoryStore::builder().max_keys(100).clock(clock).build();
        assert_eq!((store.shards.len(), store.max_keys()), (1, 100));
        // T = 360 s: no key expires during the test, and a key used again
        // gets the largest TAT.
        let quota = Quota::per_hour(10);
        let second = || now.fetch_add(1_000_000_000, Ordering::SeqCst);
        for key in 0..100 {
            second();
            assert!(store.check_now(&Key::from_u64(key), &quota, 1).is_allowed());
        }
        second();
        assert!(store.check_now(&Key::from_u64(0), &quota, 1).is_allowed());
        assert_eq!(store.len(), 100);
        second();
        assert!(store.check_now(&Key::from_u64(100), &quota, 1).is_allowed());
        // A quarter evicted: keys 1 to 25, the least recently used.
        let kept: Vec<u64> = (0..=100).filter(|&key| tracked(&store, key)).collect();
        let expected: Vec<u64> = std::iter::once(0).chain(26..=100).collect();
        assert_eq!(kept, expected);
    }

    // A cap above the number of active clients limits every one of them,
    // however small: 50 clients under a cap of 100 each get exactly their
    // burst. (Split over 64 shards of 1 key, clients sharing a shard
    // evicted each other on every request and were never limited.)
    #[test]
    fn a_small_cap_still_limits_every_active_client() {
        let (now, clock) = manual_clock();
        let store = MemoryStore::builder().max_keys(100).clock(clock).build();
        assert_eq!(store.max_keys(), 100);
        let quota = Quota::per_hour(5);
        let mut allowed = [0u32; 50];
        for _ in 0..20 {
            now.fetch_add(1_000_000, Ordering::SeqCst);
            for (client, allowed) in (0u64..).zip(&mut allowed) {
                if store
                    .check_now(&Key::from_u64(client), &quota, 1)
                    .is_allowed()
                {
                    *allowed += 1;
                }
            }
        }
        assert_eq!(allowed, [5; 50]);
    }

    // Each shard evicts on its own, so it holds at least 256 keys; the
    // default cap keeps 64 shards.
    #[test]
    fn shards_hold_at_least_256_keys() {
        let shards = |max_keys| {
            MemoryStore::builder()
                .max_keys(max_keys)
                .build()
                .shards
                .len()
        };
        assert_eq!(MemoryStore::new().shards.len(), 64);
        assert_eq!(MemoryStore::new().max_keys(), 99_968);
        for (max_keys, expected) in [
            (1, 1),
            (100, 1),
            (511, 1),
            (512, 2),
            (1000, 2),
            (10_000, 32),
            (16_383, 32),
            (16_384, 64),
            (usize::MAX, 64),
        ] {
            assert_eq!(shards(max_keys), expected, "max_keys({max_keys})");
        }
        for max_keys in [1, 100, 511, 512, 1000, 10_000, 100_000] {
            let store = MemoryStore::builder().max_keys(max_keys).build();
            assert!(store.shard_cap >= max_keys.min(256), "max_keys({max_keys})");
            assert!(store.max_keys() > max_keys - store.shards.len());
        }
    }

    // Bad configuration fails when built, naming the field.
    #[test]
    fn max_keys_zero_fails_naming_the_field() {
        let err = MemoryStore::builder().max_keys(0).try_build().unwrap_err();
        assert_eq!(err.field(), "max_keys");
        assert!(MemoryStore::builder().max_keys(1).try_build().is_ok());
    }

    #[test]
    #[should_panic(expected = "`max_keys`")]
    fn build_panics_on_max_keys_zero() {
        let _ = MemoryStore::builder().max_keys(0).build();
    }

    // Periodic retain drops keys whose bucket is full again (TAT in the
    // past: forgetting them changes no GCRA decision).
    #[test]
    fn expired_keys_are_swept_on_the_request_path() {
        let (now, clock) = manual_clock();
        let store = MemoryStore::builder()
            .sweep_interval(Duration::from_secs(10))
            .clock(clock)
            .build();
        let quota = Quota::per_second(1);
        for i in 0..1000 {
            store.check_now(&Key::from_u64(i), &quota, 1);
        }
        assert_eq!(store.len(), 1000);
        now.store(11_000_000_000, Ordering::SeqCst);
        // New keys trigger the sweep of the shards they land in.
        for i in 1000..1100 {
            store.check_now(&Key::from_u64(i), &quota, 1);
        }
        assert!(store.len() < 1000, "{}", store.len());
        store.retain_recent();
        assert_eq!(store.len(), 100);
        now.store(20_000_000_000, Ordering::SeqCst);
        store.retain_recent();
        assert!(store.is_empty());
    }

    // The check is atomic per key: 8 threads racing on one key at one
    // instant get exactly the burst.
    #[test]
    fn concurrent_checks_on_one_key_allow_exactly_the_burst() {
        let (_, clock) = manual_clock();
        let store = Arc::new(MemoryStore::builder().clock(clock).build());
        let quota = Quota::per_hour(1).with_burst(100);
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    (0..500)
                        .filter(|_| store.check_now(&Key::global(), &quota, 1).is_allowed())
                        .count()
                })
            })
            .collect();
        let allowed: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(allowed, 100);
    }

    #[test]
    fn denied_requests_do_not_create_keys() {
        let store = MemoryStore::new();
        let d = store.check_now(&Key::global(), &Quota::per_second(1), 2);
        assert!(!d.is_allowed());
        assert_eq!(store.len(), 0);
    }
}
