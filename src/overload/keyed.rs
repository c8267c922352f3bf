//! Per-key in-flight limits: how many requests each key (a subject, a
//! client IP, an API key, a route) has in flight, bounded.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::HeaderValue;

use crate::rate_limit::{Key, KeyExtractor, RequestInfo, UnknownKey};
use crate::sync::lock;

/// A per-key in-flight limit: at most `max_in_flight` requests in flight
/// per key, the key found by a [`KeyExtractor`] of the rate limiter
/// (default [`SubjectOrIp`](crate::rate_limit::SubjectOrIp)).
///
/// ```
/// use tower_edge::overload::KeyLimit;
/// use tower_edge::rate_limit::ClientIp;
///
/// let per_ip = KeyLimit::new("per-ip", 16).key(ClientIp);
/// # let _ = per_ip;
/// ```
pub struct KeyLimit {
    pub(crate) name: String,
    pub(crate) max_in_flight: u32,
    pub(crate) key: Arc<dyn KeyExtractor>,
}

impl fmt::Debug for KeyLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyLimit")
            .field("name", &self.name)
            .field("max_in_flight", &self.max_in_flight)
            .finish_non_exhaustive()
    }
}

impl KeyLimit {
    /// At most `max_in_flight` requests in flight per subject (per client
    /// IP when anonymous); `name` is the policy name in the `RateLimit`
    /// fields and the decision marker.
    pub fn new(name: impl Into<String>, max_in_flight: u32) -> Self {
        Self {
            name: name.into(),
            max_in_flight,
            key: Arc::new(crate::rate_limit::SubjectOrIp),
        }
    }

    /// How requests are keyed (any rate-limit [`KeyExtractor`]).
    pub fn key(mut self, key: impl KeyExtractor) -> Self {
        self.key = Arc::new(key);
        self
    }
}

/// The shards of the per-key counts.
const SHARDS: usize = 16;

/// What a per-key check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyAdmission {
    Admitted,
    /// The key has `max_in_flight` requests in flight.
    Limited,
    /// The key is new and the map holds `max_keys` keys already.
    Full,
}

type Shard = hashbrown::HashMap<Key, u32, foldhash::fast::RandomState>;

/// The running per-key limit.
pub(crate) struct KeyLimiter {
    pub(crate) name: Arc<str>,
    max: u32,
    key: Arc<dyn KeyExtractor>,
    unknown: UnknownKey,
    unknown_warned: AtomicBool,
    hasher: foldhash::fast::RandomState,
    /// Each shard and its cap (the caps add up to `max_keys`).
    shards: Box<[(Mutex<Shard>, usize)]>,
    /// `"name";q=N;qu="concurrent-requests"`.
    pub(crate) policy_header: HeaderValue,
    /// `"name";r=0`.
    pub(crate) remaining_header: HeaderValue,
}

impl KeyLimiter {
    pub(crate) fn new(
        limit: KeyLimit,
        max_keys: usize,
        unknown: UnknownKey,
    ) -> Result<Self, crate::ConfigError> {
        let name = &limit.name;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            return Err(crate::ConfigError::new(
                "per_key",
                format!("name {name:?} must be non-empty printable ASCII without `\"` or `\\`"),
            ));
        }
        if limit.max_in_flight == 0 {
            return Err(crate::ConfigError::new(
                "per_key",
                "max_in_flight must be at least 1",
            ));
        }
        let policy = format!(
            "\"{name}\";q={};qu=\"concurrent-requests\"",
            limit.max_in_flight
        );
        let remaining = format!("\"{name}\";r=0");
        let header = |value: String| {
            HeaderValue::try_from(value)
                .map_err(|_| crate::ConfigError::new("per_key", "name is not a valid header value"))
        };
        Ok(Self {
            policy_header: header(policy)?,
            remaining_header: header(remaining)?,
            name: Arc::from(limit.name.as_str()),
            max: limit.max_in_flight,
            key: limit.key,
            unknown,
            unknown_warned: AtomicBool::new(false),
            hasher: foldhash::fast::RandomState::default(),
            shards: (0..SHARDS)
                .map(|i| {
                    let cap = max_keys / SHARDS + usize::from(i < max_keys % SHARDS);
                    (Mutex::new(Shard::with_hasher(Default::default())), cap)
                })
                .collect(),
        })
    }

    /// The key of a request, or `None` to skip the limit.
    pub(crate) fn key_of(&self, info: &RequestInfo<'_>) -> Option<Key> {
        if let Some(key) = self.key.extract(info) {
            return Some(key);
        }
        if !self.unknown_warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                limit = &*self.name,
                mode = ?self.unknown,
                "overload: no key found for a request (is the peer address in the request \
                 extensions?); further occurrences are not logged"
            );
        }
        match self.unknown {
            UnknownKey::Skip => None,
            _ => Some(Key::unknown()),
        }
    }

    fn shard(&self, key: &Key) -> &(Mutex<Shard>, usize) {
        let hash = self.hasher.hash_one(key);
        // The top bits: the map inside uses the low ones.
        &self.shards[(hash >> 60) as usize % SHARDS]
    }

    /// Takes one of `key`'s slots.
    pub(crate) fn acquire(&self, key: Key) -> KeyAdmission {
        let (shard, cap) = self.shard(&key);
        let mut shard = lock(shard);
        let len = shard.len();
        match shard.get_mut(&key) {
            Some(count) if *count >= self.max => KeyAdmission::Limited,
            Some(count) => {
                *count += 1;
                KeyAdmission::Admitted
            }
            None if len >= *cap => KeyAdmission::Full,
            None => {
                shard.insert(key, 1);
                KeyAdmission::Admitted
            }
        }
    }

    /// Gives one of `key`'s slots back; a key with nothing in flight is
    /// forgotten, so the map holds only keys with requests in flight.
    pub(crate) fn release(&self, key: Key) {
        let mut shard = lock(&self.shard(&key).0);
        if let Some(count) = shard.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                shard.remove(&key);
            }
        }
    }

    /// Keys with requests in flight.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|(s, _)| lock(s).len()).sum()
    }
}
