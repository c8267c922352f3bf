//! A bounded map whose entries expire: the crate's in-memory caches (the
//! JWT verified-token cache, the JWKS unknown-`kid` cache) are built on it.
//!
//! * **Bounded**: at most `capacity` entries, an exact bound. The map is
//!   split into shards (one by default), each a `Mutex` over its own part
//!   of the capacity; the limits of the shards add up to the capacity.
//! * **Expiry**: each entry has its own deadline, in whatever clock the
//!   caller uses (`I`: an `Instant`, Unix seconds...). An entry is served
//!   while `now < deadline`; an expired one is dropped when read.
//! * **Eviction rule**: each shard keeps its entries in insertion order (an
//!   entry inserted again moves to the back). An insert into a shard first
//!   drops the expired entries at the front, then, if the shard is still
//!   full, evicts its oldest entry. Every operation is O(1) amortised (an
//!   entry is dropped at most once): no scan of the map, whatever keys a
//!   client makes the caller insert.
//! * **Hashing**: XXH3 with a random seed per map, so that a client cannot
//!   aim keys at one shard or bucket; a lookup compares the full key, so a
//!   hash collision never serves another key's value.
//! * **Why not `moka`**: measured on the hit path, the one every cached
//!   JWT takes (callgrind, 2026-12-03, 20 000 gets of one 183-byte token
//!   key with an `Arc` value, release build): this map 454 instructions
//!   per get, `moka` 0.12 `sync::Cache` 1 517 (with the expiry check done
//!   by the caller, as moka's per-entry expiry would). `moka` also has no
//!   per-entry deadline in the caller's clock, which the JWT cache (Unix
//!   seconds) and the JWKS cache (tokio time, paused in tests) need.
//! * **Locking**: the shard's lock is held for the map operation alone and
//!   never returned to the caller, so it is never held across an `.await`.
//!   A hit costs one hash, one lock and a clone of the value (keep values
//!   cheap to clone, e.g. an `Arc`).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::Mutex;

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::sync::lock;

/// No node (the end of the insertion-order list).
const NIL: u32 = u32::MAX;

/// A bounded, sharded map with per-entry expiry; see the module docs.
pub(crate) struct TtlMap<K, V, I> {
    hasher: Xxh3Seeded,
    shards: Box<[Mutex<Shard<K, V, I>>]>,
    /// `shards.len() - 1` (the count is a power of two).
    shard_mask: usize,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone, I: Copy + Ord> TtlMap<K, V, I> {
    /// A map of at most `capacity` entries, in one shard: the eviction rule
    /// then holds across the whole map. A capacity of 0 holds nothing.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn new(capacity: usize) -> Self {
        Self::sharded(capacity, 1)
    }

    /// A map of at most `capacity` entries in up to `max_shards` shards
    /// (the largest power of two up to both, at least one), for maps hit
    /// from many threads at once. The eviction rule holds per shard.
    pub(crate) fn sharded(capacity: usize, max_shards: usize) -> Self {
        let count = match capacity {
            0 => 1,
            _ => max_shards.clamp(1, 1 << capacity.ilog2()),
        };
        let count = 1 << count.ilog2();
        // The capacity is split exactly: the first `capacity % count`
        // shards hold one entry more than the others.
        let (base, extra) = (capacity / count, capacity % count);
        let shards = (0..count)
            .map(|i| Mutex::new(Shard::new(base + usize::from(i < extra))))
            .collect();
        Self {
            hasher: Xxh3Seeded::random(),
            shards,
            shard_mask: count - 1,
            capacity,
        }
    }

    fn shard(&self, hash: u64) -> &Mutex<Shard<K, V, I>> {
        // Middle bits pick the shard: the table's bucket index uses the low
        // bits and its control bytes the top seven.
        &self.shards[(hash >> 32) as usize & self.shard_mask]
    }

    /// The value of `key`, if present and `now < deadline`. An expired
    /// entry is removed.
    pub(crate) fn get<Q>(&self, key: &Q, now: I) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        lock(self.shard(hash)).get(hash, key, now)
    }

    /// Stores `value` under `key` until `deadline` (replacing and moving to
    /// the back an entry already there), evicting per the module docs'
    /// rule. Nothing is stored when `deadline <= now`.
    pub(crate) fn insert(&self, key: K, value: V, deadline: I, now: I) {
        if deadline <= now {
            return;
        }
        let hash = self.hasher.hash_one(&key);
        lock(self.shard(hash)).insert(hash, key, value, deadline, now);
    }

    /// Removes `key`, returning its value (expired or not).
    pub(crate) fn remove<Q>(&self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        lock(self.shard(hash)).remove(hash, key)
    }

    /// Removes every entry.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            let mut shard = lock(shard);
            let limit = shard.limit;
            *shard = Shard::new(limit);
        }
    }

    /// How many entries the map holds (expired ones not yet dropped
    /// included).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len).sum()
    }

    /// The most entries the map holds.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

impl<K, V, I> std::fmt::Debug for TtlMap<K, V, I> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TtlMap")
            .field("capacity", &self.capacity)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

struct Entry<K, V, I> {
    key: K,
    value: V,
    deadline: I,
}

/// A slot of a shard: an entry (or a free slot) and its place in the
/// insertion order.
struct Node<K, V, I> {
    hash: u64,
    prev: u32,
    next: u32,
    entry: Option<Entry<K, V, I>>,
}

/// One lock's worth of the map: a hash table of slot indices, the slots,
/// and the insertion order as a doubly linked list through the slots.
struct Shard<K, V, I> {
    table: HashTable<u32>,
    nodes: Vec<Node<K, V, I>>,
    /// Free slots, reused before the vector grows.
    free: Vec<u32>,
    /// The oldest entry.
    head: u32,
    /// The newest entry.
    tail: u32,
    len: usize,
    limit: usize,
}

impl<K: Eq, V: Clone, I: Copy + Ord> Shard<K, V, I> {
    fn new(limit: usize) -> Self {
        Self {
            table: HashTable::new(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            len: 0,
            limit,
        }
    }

    fn entry(&self, index: u32) -> &Entry<K, V, I> {
        self.nodes[index as usize]
            .entry
            .as_ref()
            .expect("the table only indexes occupied slots")
    }

    fn find<Q>(&self, hash: u64, key: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        self.table
            .find(hash, |&i| self.entry(i).key.borrow() == key)
            .copied()
    }

    fn get<Q>(&mut self, hash: u64, key: &Q, now: I) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let index = self.find(hash, key)?;
        let entry = self.entry(index);
        if now < entry.deadline {
            return Some(entry.value.clone());
        }
        self.remove_at(index);
        None
    }

    fn insert(&mut self, hash: u64, key: K, value: V, deadline: I, now: I) {
        if self.limit == 0 {
            return;
        }
        if let Some(index) = self.find(hash, &key) {
            let node = &mut self.nodes[index as usize];
            node.entry = Some(Entry {
                key,
                value,
                deadline,
            });
            self.unlink(index);
            self.push_back(index);
            return;
        }
        while self.head != NIL && self.entry(self.head).deadline <= now {
            self.remove_at(self.head);
        }
        if self.len >= self.limit {
            self.remove_at(self.head);
        }
        let node = Node {
            hash,
            prev: NIL,
            next: NIL,
            entry: Some(Entry {
                key,
                value,
                deadline,
            }),
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.nodes[index as usize] = node;
                index
            }
            None => {
                // `limit` slots at most, far below `NIL`.
                let index = u32::try_from(self.nodes.len()).expect("fewer than 2^32 entries");
                self.nodes.push(node);
                index
            }
        };
        let nodes = &self.nodes;
        self.table
            .insert_unique(hash, index, |&i| nodes[i as usize].hash);
        self.push_back(index);
        self.len += 1;
    }

    fn remove<Q>(&mut self, hash: u64, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Eq + ?Sized,
    {
        let index = self.find(hash, key)?;
        Some(self.remove_at(index).value)
    }

    fn remove_at(&mut self, index: u32) -> Entry<K, V, I> {
        let hash = self.nodes[index as usize].hash;
        if let Ok(found) = self.table.find_entry(hash, |&i| i == index) {
            found.remove();
        }
        self.unlink(index);
        self.free.push(index);
        self.len -= 1;
        self.nodes[index as usize]
            .entry
            .take()
            .expect("an occupied slot")
    }

    fn unlink(&mut self, index: u32) {
        let Node { prev, next, .. } = self.nodes[index as usize];
        match prev {
            NIL => self.head = next,
            prev => self.nodes[prev as usize].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.nodes[next as usize].prev = prev,
        }
    }

    fn push_back(&mut self, index: u32) {
        let tail = self.tail;
        let node = &mut self.nodes[index as usize];
        node.prev = tail;
        node.next = NIL;
        match tail {
            NIL => self.head = index,
            tail => self.nodes[tail as usize].next = index,
        }
        self.tail = index;
    }
}

/// XXH3 with a random seed: one-shot over each `write` (a `str` key is
/// one write of its bytes, then a one-byte terminator).
#[derive(Clone, Copy)]
struct Xxh3Seeded(u64);

impl Xxh3Seeded {
    fn random() -> Self {
        Self(RandomState::new().hash_one(0x7474_6c5f_6d61_7073_u64))
    }
}

impl BuildHasher for Xxh3Seeded {
    type Hasher = Xxh3Hasher;

    fn build_hasher(&self) -> Xxh3Hasher {
        Xxh3Hasher(self.0)
    }
}

struct Xxh3Hasher(u64);

impl Hasher for Xxh3Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0 = xxh3_64_with_seed(bytes, self.0);
    }

    fn write_u8(&mut self, byte: u8) {
        // The `str` terminator: a cheap mix, the bytes were hashed already.
        self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(map: &TtlMap<Box<str>, u32, u64>, names: &[&str], now: u64) -> Vec<bool> {
        names.iter().map(|k| map.get(*k, now).is_some()).collect()
    }

    #[test]
    fn get_insert_remove_and_expiry() {
        let map: TtlMap<Box<str>, u32, u64> = TtlMap::new(4);
        map.insert("a".into(), 1, 10, 0);
        assert_eq!(map.get("a", 9), Some(1));
        assert_eq!(map.get("a", 10), None, "served while now < deadline");
        assert_eq!(map.len(), 0, "an expired entry is dropped when read");
        map.insert("b".into(), 2, 5, 5);
        assert_eq!(map.len(), 0, "nothing stored past its deadline");
        map.insert("c".into(), 3, 100, 0);
        map.insert("c".into(), 4, 100, 0);
        assert_eq!((map.get("c", 0), map.len()), (Some(4), 1));
        assert_eq!(map.remove("c"), Some(4));
        assert_eq!(map.remove("c"), None);
        map.insert("d".into(), 5, 100, 0);
        map.clear();
        assert_eq!(map.len(), 0);
    }

    #[test]
    fn the_oldest_insert_is_evicted_and_a_reinsert_moves_to_the_back() {
        let map: TtlMap<Box<str>, u32, u64> = TtlMap::new(3);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            map.insert(k.into(), i as u32, 100, 0);
        }
        map.insert("a".into(), 9, 100, 1);
        map.insert("d".into(), 3, 100, 2);
        assert_eq!(
            keys(&map, &["a", "b", "c", "d"], 2),
            [true, false, true, true]
        );
        // Expired entries at the front go before anything live is evicted.
        let map: TtlMap<Box<str>, u32, u64> = TtlMap::new(3);
        map.insert("short".into(), 0, 5, 0);
        map.insert("x".into(), 1, 100, 0);
        map.insert("y".into(), 2, 100, 0);
        map.insert("z".into(), 3, 100, 6);
        assert_eq!(
            keys(&map, &["short", "x", "y", "z"], 6),
            [false, true, true, true]
        );
    }

    #[test]
    fn capacity_is_an_exact_bound_for_any_shard_count() {
        for capacity in (0..=40).chain([63, 100, 1000, 4095, 4096, 4097]) {
            let map: TtlMap<String, usize, u64> = TtlMap::sharded(capacity, 16);
            assert_eq!(map.capacity(), capacity);
            let limits: usize = map.shards.iter().map(|s| lock(s).limit).sum();
            assert_eq!(limits, capacity);
            for i in 0..capacity * 4 + 64 {
                map.insert(format!("key-{i}"), i, 1_000, 0);
                assert!(map.len() <= capacity, "capacity {capacity}");
            }
            let last = capacity * 4 + 63;
            let expected = (capacity > 0).then_some(last);
            assert_eq!(map.get(format!("key-{last}").as_str(), 0), expected);
        }
    }

    // Slots are reused: hostile churn never grows a shard past its limit.
    #[test]
    fn churn_reuses_slots() {
        let map: TtlMap<u64, u64, u64> = TtlMap::new(8);
        for i in 0..10_000 {
            map.insert(i, i, i + 3, i);
            if i % 3 == 0 {
                map.remove(&(i / 2));
            }
        }
        let shard = lock(&map.shards[0]);
        assert!(shard.nodes.len() <= 8 && shard.len <= 8);
    }

    // A hash collision never serves another key's value: the full key is
    // compared.
    #[test]
    fn colliding_hashes_compare_the_full_key() {
        let mut shard: Shard<Box<str>, u32, u64> = Shard::new(4);
        shard.insert(7, "mine".into(), 1, 100, 0);
        shard.insert(7, "someone-else".into(), 2, 100, 0);
        assert_eq!(shard.get(7, "mine", 0), Some(1));
        assert_eq!(shard.get(7, "someone-else", 0), Some(2));
        assert_eq!(shard.get(7, "third", 0), None);
        assert_eq!(shard.remove(7, "mine"), Some(1));
        assert_eq!(shard.get(7, "someone-else", 0), Some(2));
    }
}
