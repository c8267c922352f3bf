//! The in-process tier: entries bounded in bytes, evicted oldest first,
//! indexed by group for purges.
//!
//! Why neither `moka` nor the crate's `TtlMap`: the `TtlMap` bounds the
//! number of entries, and a response cache must bound bytes (one 1 MiB
//! entry weighs as much as a thousand 1 KiB ones); `moka` bounds bytes
//! with a weigher but costs three times the instructions of our map on a
//! hit (measured for `TtlMap`, see its docs), has no stale windows
//! (moka #526), and no index by group. This map is a `HashMap` from the
//! primary key's hash to the variants of that key, an insertion-order
//! queue for eviction and a group index, under one lock held for the map
//! operation alone (never across an `.await`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderMap;
use tokio::time::Instant;

use super::entry::Entry;
use crate::sync::lock;

/// The most variants (`Vary` values) kept per primary key; the oldest
/// goes first.
pub(crate) const MAX_VARIANTS: usize = 16;

/// Keys are already seeded hashes: used as they are.
#[derive(Default)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub(crate) type ByHash<V> = HashMap<u64, V, BuildHasherDefault<IdentityHasher>>;

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The newest variant matching the request's `Vary` fields.
    Found(Arc<Entry>),
    /// Entries for the key, none for these `Vary` fields.
    VaryMiss,
    /// Nothing for the key.
    UriMiss,
}

#[derive(Default)]
struct Inner {
    entries: ByHash<Vec<(u64, Arc<Entry>)>>,
    /// (key, id) in insertion order; ids of replaced entries are skipped.
    order: VecDeque<(u64, u64)>,
    groups: ByHash<HashSet<u64, BuildHasherDefault<IdentityHasher>>>,
    bytes: usize,
    count: usize,
}

/// The memory tier; see the module docs.
pub(crate) struct MemoryTier {
    inner: Mutex<Inner>,
    max_bytes: usize,
    next_id: AtomicU64,
    evicted: AtomicU64,
    bytes: AtomicU64,
}

impl std::fmt::Debug for MemoryTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTier")
            .field("max_bytes", &self.max_bytes)
            .field("bytes", &self.bytes.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl MemoryTier {
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            max_bytes,
            next_id: AtomicU64::new(1),
            evicted: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// The entry for the key whose parts are checked by `is_key`, matching
    /// the request's `headers`; dead entries met on the way are dropped.
    pub(crate) fn lookup(
        &self,
        key: u64,
        is_key: impl Fn(&Entry) -> bool,
        headers: &HeaderMap,
        now: Instant,
    ) -> Lookup {
        let mut inner = lock(&self.inner);
        let Some(variants) = inner.entries.get(&key) else {
            return Lookup::UriMiss;
        };
        let mut dead = false;
        let mut found = None;
        let mut any = false;
        for (_, entry) in variants.iter().rev() {
            if !is_key(entry) {
                continue;
            }
            if entry.is_dead(now) {
                dead = true;
                continue;
            }
            any = true;
            if entry.matches_vary(headers) {
                found = Some(Arc::clone(entry));
                break;
            }
        }
        if dead {
            inner.remove_where(key, |e| e.is_dead(now));
            self.bytes.store(inner.bytes as u64, Ordering::Relaxed);
        }
        match found {
            Some(entry) => Lookup::Found(entry),
            None if any => Lookup::VaryMiss,
            None => Lookup::UriMiss,
        }
    }

    /// Stores `entry`, replacing the same variant, then evicts the oldest
    /// entries until the tier is within its bytes. Returns how many were
    /// evicted.
    pub(crate) fn insert(&self, entry: Arc<Entry>) -> usize {
        if entry.size > self.max_bytes {
            return 0;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let key = entry.key.hash;
        let mut inner = lock(&self.inner);
        inner.remove_where(key, |e| e.same_variant(&entry));
        if inner
            .entries
            .get(&key)
            .is_some_and(|v| v.len() >= MAX_VARIANTS)
        {
            let oldest = inner.entries[&key][0].0;
            inner.remove_id(key, oldest);
        }
        for group in entry.groups.iter() {
            inner.groups.entry(*group).or_default().insert(key);
        }
        inner.bytes += entry.size;
        inner.count += 1;
        inner.entries.entry(key).or_default().push((id, entry));
        inner.order.push_back((key, id));
        let mut evicted = 0;
        while inner.bytes > self.max_bytes {
            let Some((key, id)) = inner.order.pop_front() else {
                break;
            };
            if inner.remove_id(key, id) {
                evicted += 1;
            }
        }
        // Replaced entries leave their ids behind: compact the queue when
        // they outnumber the live ones.
        if inner.order.len() > 2 * inner.count + 64 {
            let Inner { order, entries, .. } = &mut *inner;
            order.retain(|(key, id)| {
                entries
                    .get(key)
                    .is_some_and(|v| v.iter().any(|(i, _)| i == id))
            });
        }
        self.bytes.store(inner.bytes as u64, Ordering::Relaxed);
        drop(inner);
        self.evicted.fetch_add(evicted as u64, Ordering::Relaxed);
        evicted
    }

    /// Removes every entry in the group `group` (a `Cache-Groups` name's
    /// hash, or a URI's); returns how many.
    pub(crate) fn purge_group(&self, group: u64) -> usize {
        let mut inner = lock(&self.inner);
        let Some(keys) = inner.groups.remove(&group) else {
            return 0;
        };
        let mut removed = 0;
        for key in keys {
            removed += inner.remove_where(key, |e| e.groups.contains(&group));
        }
        self.bytes.store(inner.bytes as u64, Ordering::Relaxed);
        removed
    }

    /// Removes everything.
    pub(crate) fn clear(&self) {
        let mut inner = lock(&self.inner);
        *inner = Inner::default();
        self.bytes.store(0, Ordering::Relaxed);
    }

    /// Bytes held now.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Entries evicted for room since the tier was made.
    pub(crate) fn evicted(&self) -> u64 {
        self.evicted.load(Ordering::Relaxed)
    }

    /// Entries held now.
    pub(crate) fn len(&self) -> usize {
        lock(&self.inner).count
    }
}

impl Inner {
    /// Removes the variants of `key` for which `pred` holds; how many.
    fn remove_where(&mut self, key: u64, pred: impl Fn(&Entry) -> bool) -> usize {
        let Some(variants) = self.entries.get_mut(&key) else {
            return 0;
        };
        let mut gone = Vec::new();
        variants.retain(|(_, e)| {
            let remove = pred(e);
            if remove {
                gone.push(Arc::clone(e));
            }
            !remove
        });
        let empty = variants.is_empty();
        if empty {
            self.entries.remove(&key);
        }
        for entry in &gone {
            self.forget(key, entry);
        }
        gone.len()
    }

    fn remove_id(&mut self, key: u64, id: u64) -> bool {
        let Some(variants) = self.entries.get_mut(&key) else {
            return false;
        };
        let Some(at) = variants.iter().position(|(i, _)| *i == id) else {
            return false;
        };
        let (_, entry) = variants.remove(at);
        if variants.is_empty() {
            self.entries.remove(&key);
        }
        self.forget(key, &entry);
        true
    }

    /// Accounts for a removed entry and unindexes its groups (unless
    /// another variant of its key is still in them).
    fn forget(&mut self, key: u64, entry: &Entry) {
        self.bytes -= entry.size;
        self.count -= 1;
        let remaining = self.entries.get(&key);
        for group in entry.groups.iter() {
            let still = remaining.is_some_and(|v| v.iter().any(|(_, e)| e.groups.contains(group)));
            if still {
                continue;
            }
            if let Some(keys) = self.groups.get_mut(group) {
                keys.remove(&key);
                if keys.is_empty() {
                    self.groups.remove(group);
                }
            }
        }
    }
}
