//! The in-memory store: one replica's keys, bounded in keys and bytes.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::fingerprint::Fingerprint;
use super::outcome::StoredResponse;
use super::scope::StoreKey;
use super::store::{Claim, Completion, FencingToken, IdempotencyStore, StoreError, StoreFuture};
use crate::ConfigError;
use crate::sync::lock;

/// Default cap on keys (in flight and completed) of a [`MemoryStore`].
pub const DEFAULT_MAX_KEYS: usize = 100_000;
/// Default cap on the bytes of stored outcomes of a [`MemoryStore`]: 256 MiB.
pub const DEFAULT_MAX_BYTES: usize = 256 << 20;

enum Entry {
    InFlight {
        fingerprint: Fingerprint,
        token: u64,
        until: Instant,
    },
    Completed {
        fingerprint: Fingerprint,
        token: u64,
        response: Arc<StoredResponse>,
        until: Instant,
    },
}

impl Entry {
    fn token(&self) -> u64 {
        match self {
            Self::InFlight { token, .. } | Self::Completed { token, .. } => *token,
        }
    }

    fn until(&self) -> Instant {
        match self {
            Self::InFlight { until, .. } | Self::Completed { until, .. } => *until,
        }
    }
}

#[derive(Default)]
struct State {
    map: HashMap<StoreKey, Entry>,
    /// Claims in claim order (leases all last the same, so the front
    /// expires first); stale pairs are skipped.
    leases: VecDeque<(StoreKey, u64)>,
    /// Completions in completion order: what is evicted first.
    completed: VecDeque<(StoreKey, u64)>,
    bytes: usize,
}

impl State {
    /// Removes `key` if it still is the entry of `token`.
    fn remove_if(&mut self, key: &StoreKey, token: u64) -> bool {
        if self.map.get(key).is_some_and(|e| e.token() == token) {
            if let Some(Entry::Completed { response, .. }) = self.map.remove(key) {
                self.bytes -= response.size();
            }
            return true;
        }
        false
    }

    /// Drops expired entries at the fronts of both queues: O(1) amortised.
    fn sweep(&mut self, now: Instant) {
        for queue in [0, 1] {
            loop {
                let q = if queue == 0 {
                    &self.leases
                } else {
                    &self.completed
                };
                let Some(&(key, token)) = q.front() else {
                    break;
                };
                let live = self
                    .map
                    .get(&key)
                    .filter(|e| e.token() == token)
                    .map(|e| e.until() > now);
                match live {
                    Some(true) => {
                        // A live lease that completed stays queued until
                        // its completion is swept.
                        if queue == 0 && matches!(self.map.get(&key), Some(Entry::Completed { .. }))
                        {
                            self.leases.pop_front();
                            continue;
                        }
                        break;
                    }
                    Some(false) => {
                        self.remove_if(&key, token);
                    }
                    None => {}
                }
                if queue == 0 {
                    self.leases.pop_front();
                } else {
                    self.completed.pop_front();
                }
            }
        }
    }

    /// Evicts the oldest completed entry; false when there is none.
    fn evict_one(&mut self) -> bool {
        while let Some((key, token)) = self.completed.pop_front() {
            if matches!(self.map.get(&key), Some(Entry::Completed { token: t, .. }) if *t == token)
            {
                self.remove_if(&key, token);
                return true;
            }
        }
        false
    }
}

struct Inner {
    state: Mutex<State>,
    next_token: AtomicU64,
    max_keys: usize,
    max_bytes: usize,
}

/// An [`IdempotencyStore`] in this process's memory: a retry is
/// recognised only when it reaches the same replica (use the Redis store
/// for several replicas).
///
/// * **Bounded**: at most [`max_keys`](MemoryStoreBuilder::max_keys) keys
///   (default [`DEFAULT_MAX_KEYS`]) and
///   [`max_bytes`](MemoryStoreBuilder::max_bytes) of stored outcomes
///   (default [`DEFAULT_MAX_BYTES`]). When full, the oldest completed key
///   is forgotten first (a retry of it would run again); keys in flight
///   are never evicted: when every key is in flight, a new claim fails
///   (the layer's [`OnStoreError`](super::OnStoreError) decides).
/// * **Expiry**: a lease expires after the layer's lease time, an outcome
///   after its retention (24 h by default); expired entries are dropped
///   when met, and from the front of the claim and completion queues on
///   each claim: O(1) amortised, never a scan.
/// * Time is tokio's [`Instant`], so tests can pause it. One lock, held
///   for the map operation only, never across an `.await`.
///
/// Cheap to clone; clones share the keys.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("keys", &self.len())
            .field("max_keys", &self.inner.max_keys)
            .field("max_bytes", &self.inner.max_bytes)
            .finish()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryStoreBuilder {
    max_keys: usize,
    max_bytes: usize,
}

impl MemoryStoreBuilder {
    /// The cap on keys, in flight and completed (default [`DEFAULT_MAX_KEYS`]).
    pub fn max_keys(mut self, max_keys: usize) -> Self {
        self.max_keys = max_keys;
        self
    }

    /// The cap on bytes of stored outcomes (default [`DEFAULT_MAX_BYTES`]).
    pub fn max_bytes(mut self, max_bytes: usize) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    /// Builds the store.
    ///
    /// # Errors
    ///
    /// `max_keys` or `max_bytes` of 0.
    pub fn build(self) -> Result<MemoryStore, ConfigError> {
        if self.max_keys == 0 {
            return Err(ConfigError::new("max_keys", "must be at least 1"));
        }
        if self.max_bytes == 0 {
            return Err(ConfigError::new("max_bytes", "must be at least 1"));
        }
        Ok(MemoryStore {
            inner: Arc::new(Inner {
                state: Mutex::new(State::default()),
                next_token: AtomicU64::new(1),
                max_keys: self.max_keys,
                max_bytes: self.max_bytes,
            }),
        })
    }
}

impl MemoryStore {
    /// A store with the default bounds.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the defaults are valid"))
    }

    /// A builder, to set the bounds.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_keys: DEFAULT_MAX_KEYS,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// Keys held now (in flight and completed, expired ones not yet
    /// dropped included).
    pub fn len(&self) -> usize {
        lock(&self.inner.state).map.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of stored outcomes held now.
    pub fn bytes(&self) -> usize {
        lock(&self.inner.state).bytes
    }

    fn claim_now(
        &self,
        key: &StoreKey,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> Result<Claim, StoreError> {
        let now = Instant::now();
        let inner = &*self.inner;
        let mut state = lock(&inner.state);
        let mut took_over = false;
        match state.map.get(key) {
            Some(Entry::InFlight {
                fingerprint: f,
                until,
                ..
            }) if *until > now => {
                return Ok(if f == fingerprint {
                    Claim::InFlight
                } else {
                    Claim::Mismatch
                });
            }
            Some(Entry::Completed {
                fingerprint: f,
                response,
                until,
                ..
            }) if *until > now => {
                return Ok(if f == fingerprint {
                    Claim::Completed(Arc::clone(response))
                } else {
                    Claim::Mismatch
                });
            }
            Some(Entry::InFlight { token, .. }) => {
                took_over = true;
                let token = *token;
                state.remove_if(key, token);
            }
            Some(Entry::Completed { token, .. }) => {
                let token = *token;
                state.remove_if(key, token);
            }
            None => {}
        }
        // After the lookup: a lease this claim takes over is reported so.
        state.sweep(now);
        while state.map.len() >= inner.max_keys {
            if !state.evict_one() {
                return Err(StoreError::new(
                    "idempotency memory store is full of requests in flight",
                ));
            }
        }
        let token = inner.next_token.fetch_add(1, Ordering::Relaxed);
        state.map.insert(
            *key,
            Entry::InFlight {
                fingerprint: *fingerprint,
                token,
                until: now + lease,
            },
        );
        state.leases.push_back((*key, token));
        Ok(Claim::Acquired {
            token: FencingToken::new(token),
            took_over,
        })
    }

    fn complete_now(
        &self,
        key: &StoreKey,
        fingerprint: &Fingerprint,
        token: FencingToken,
        response: Arc<StoredResponse>,
        retention: Duration,
    ) -> Result<Completion, StoreError> {
        let now = Instant::now();
        let inner = &*self.inner;
        let mut state = lock(&inner.state);
        let holds = matches!(
            state.map.get(key),
            Some(Entry::InFlight { fingerprint: f, token: t, .. })
                if *t == token.get() && f == fingerprint
        );
        if !holds {
            return Ok(Completion::Fenced);
        }
        let size = response.size();
        if size > inner.max_bytes {
            state.remove_if(key, token.get());
            return Err(StoreError::new(
                "outcome larger than the memory store's byte cap; key released",
            ));
        }
        while state.bytes + size > inner.max_bytes {
            if !state.evict_one() {
                break;
            }
        }
        state.bytes += size;
        state.map.insert(
            *key,
            Entry::Completed {
                fingerprint: *fingerprint,
                token: token.get(),
                response,
                until: now + retention,
            },
        );
        state.completed.push_back((*key, token.get()));
        Ok(Completion::Stored)
    }
}

impl IdempotencyStore for MemoryStore {
    fn claim(
        &self,
        key: &StoreKey,
        fingerprint: &Fingerprint,
        lease: Duration,
    ) -> StoreFuture<Claim> {
        StoreFuture::ready(self.claim_now(key, fingerprint, lease))
    }

    fn complete(
        &self,
        key: &StoreKey,
        fingerprint: &Fingerprint,
        token: FencingToken,
        response: Arc<StoredResponse>,
        retention: Duration,
    ) -> StoreFuture<Completion> {
        StoreFuture::ready(self.complete_now(key, fingerprint, token, response, retention))
    }

    fn release(&self, key: &StoreKey, token: FencingToken) -> StoreFuture<()> {
        let mut state = lock(&self.inner.state);
        if matches!(state.map.get(key), Some(Entry::InFlight { token: t, .. }) if *t == token.get())
        {
            state.remove_if(key, token.get());
        }
        StoreFuture::ready(Ok(()))
    }
}
