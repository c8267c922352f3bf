//! A Redis store for the rate limiter: the same GCRA as the
//! [`MemoryStore`], atomic in Redis (one node or a
//! Cluster), so N replicas share one quota.
//!
//! [`RedisStore`] implements [`RateLimitStore`]; give it to a
//! [`Policy`](super::Policy) with [`Policy::store`](super::Policy::store).
//!
//! # How a check runs
//!
//! * One Lua script per check, atomic: it reads the key's TAT, applies the
//!   formulas of [`gcra`](super::store::gcra) with the time of Redis (`TIME`, so
//!   replicas need no synchronised clocks), stores the new TAT with `PX` so
//!   the key expires by itself when its bucket is full again, and returns
//!   allowed / remaining / reset / retry-after: the same decision, `r`, `t`
//!   and `Retry-After` as the memory store for the same quota and schedule.
//! * The script is sent with `EVALSHA`, one command built directly per
//!   check; on `NOSCRIPT` (after `SCRIPT FLUSH`, a restart or a failover)
//!   the check is sent again as `EVAL` with the script's text, which runs it
//!   and caches it for the next `EVALSHA` in one command.
//! * The key is `<prefix>:{<key>}:<policy>` — the per-application
//!   [prefix](RedisStoreBuilder::key_prefix), the [`Key`]'s
//!   `Display` form inside a Cluster hash tag, and the policy's name, so
//!   policies sharing one store never share a bucket. It is passed in
//!   `KEYS[1]`, so the script runs on Redis Cluster.
//! * The connection, the timeout, the circuit breaker and the failure
//!   accounting are those of the crate's [`RedisBackend`]: a store built
//!   with [`RedisStore::builder`] has a backend of its own, one built
//!   [`with_backend`](RedisStore::with_backend) shares it with the other
//!   Redis-backed stores of the process. Every call has a
//!   [timeout](RedisStoreBuilder::timeout) (20 ms by default), counted from
//!   when the check hands its command to the connection: no request waits
//!   on a slow Redis much longer than that. A timed-out check gets the
//!   fallback; one slow reply never switches the shared limit off (see
//!   below). Concurrent checks share one multiplexed, pipelined connection
//!   (a `redis` `ConnectionManager`, or the Cluster connection), which
//!   reconnects by itself.
//! * Once a key is limited, later requests for it are denied locally until
//!   its `Retry-After` passes, without a round trip (a bounded
//!   [deny cache](RedisStoreBuilder::deny_cache_capacity)).
//!
//! # When Redis fails
//!
//! Building the store never connects: it connects on its first check (in
//! the background; a check needs a tokio runtime) and uses Redis as soon as
//! it answers. Redis unreachable at start-up is handled like Redis going
//! down later. A failed or timed-out call is counted
//! ([`RedisStore::failures`], [`RedisBackend::failures`], and `tower_edge.rate_limit.store.errors` with
//! feature `otel`) and that check gets the fallback. What it gets depends
//! on [`RedisFallback`]:
//!
//! * [`RedisFallback::Memory`] (default): a local [`MemoryStore`] limits
//!   each replica on its own until Redis answers again: a client gets at
//!   most its burst from Redis plus one local burst per replica, never an
//!   open door;
//! * [`RedisFallback::Error`]: the store reports an error and the layer's
//!   [`OnStoreError`](super::OnStoreError) decides: fail open (the
//!   request goes through, counted and logged) or
//!   [`OnStoreError::Reject`](super::OnStoreError::Reject) (fail closed:
//!   503 problem+json, gRPC 14 `UNAVAILABLE`).
//!
//! The backend *trips* only on sustained failure: when calls have kept
//! failing, with no successful reply in between, for
//! [`trip_after`](RedisStoreBuilder::trip_after) (100 ms). A load spike
//! that stalls this process times out every call in flight at once; the
//! replies that follow reset the count, so such a stall costs the checks it
//! hit, not a whole interval. Once tripped, checks skip Redis for
//! [`retry_interval`](RedisStoreBuilder::retry_interval) (250 ms) without
//! waiting on it, logged once per outage ([`RedisBackend::health`] says
//! whether it is tripped).
//!
//! # Default setup
//!
//! Building never connects, so these examples run without a Redis; the
//! first check connects (in a tokio runtime), and
//! [`RedisStore::ping`] can wait for Redis at start-up if you want to.
//!
//! ```
//! use tower_edge::rate_limit::{Policy, Quota, LimitRateLayer, redis::RedisStore};
//!
//! # fn main() -> Result<(), tower_edge::ConfigError> {
//! let store = RedisStore::new("redis://127.0.0.1:6379")?; // does not connect yet
//! let layer = LimitRateLayer::builder()
//!     .policy(Policy::new("api", Quota::per_minute(600)).store(store))
//!     .build()?;
//! # let _ = layer; Ok(()) }
//! ```
//!
//! # Customised
//!
//! A Cluster, an application prefix, a 20 ms budget, a local limiter while
//! Redis is away, one store shared by two policies:
//!
//! ```
//! use std::time::Duration;
//! use tower_edge::rate_limit::{
//!     ClientIp, Policy, Quota, LimitRateLayer, SubjectOrIp,
//!     redis::{RedisFallback, RedisStore},
//! };
//!
//! # fn main() -> Result<(), tower_edge::ConfigError> {
//! let store = RedisStore::cluster_builder([
//!     "redis://10.0.0.1:6379",
//!     "redis://10.0.0.2:6379",
//!     "redis://10.0.0.3:6379",
//! ])
//! .key_prefix("billing-api:rl")
//! .timeout(Duration::from_millis(20))
//! .fallback(RedisFallback::Memory)
//! .deny_cache_capacity(50_000)
//! .build()?;
//! let layer = LimitRateLayer::builder()
//!     .policy(Policy::new("burst", "10/s burst 20".parse().unwrap()).key(ClientIp).store(store.clone()))
//!     .policy(Policy::new("hourly", Quota::per_hour(1000)).key(SubjectOrIp).store(store.clone()))
//!     .build()?;
//! assert_eq!(store.failures(), 0);
//! # let _ = layer; Ok(()) }
//! ```
//!
//! # On a shared backend
//!
//! Connection settings (nodes, timeout, breaker, metrics) belong to the
//! [`RedisBackend`]; build it once and give it to every Redis-backed store:
//!
//! ```
//! use std::time::Duration;
//! use tower_edge::rate_limit::redis::RedisStore;
//! use tower_edge::redis::RedisBackend;
//!
//! # fn main() -> Result<(), tower_edge::ConfigError> {
//! let backend = RedisBackend::builder("redis://127.0.0.1:6379")
//!     .timeout(Duration::from_millis(20))
//!     .build()?;
//! let store = RedisStore::with_backend(backend.clone())
//!     .key_prefix("billing-api:rl")
//!     .build()?;
//! # let _ = store; Ok(()) }
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::key::Key;
use super::memory::MemoryStore;
use super::quota::Quota;
use super::store::{Check, Decision, RateLimitStore, StoreError, StoreFuture};
use crate::ConfigError;
use crate::redis::{RedisBackend, RedisFailure, Script, ScriptCall};

mod builder;
mod deny;
#[cfg(test)]
mod tests;

/// Re-exported from [`crate::redis`], where the backend's settings live,
/// so that the store's builder documents its defaults in one place.
pub use crate::redis::{DEFAULT_RETRY_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_TRIP_AFTER};
pub use builder::RedisStoreBuilder;
use deny::DenyCache;

/// The GCRA script (see [`gcra`](super::store::gcra)).
const SCRIPT: &str = include_str!("gcra.lua");

/// Default key prefix; give each application sharing a Redis its own.
pub const DEFAULT_KEY_PREFIX: &str = "tower-edge:rl";
/// Default number of limited keys remembered locally.
pub const DEFAULT_DENY_CACHE_CAPACITY: usize = 10_000;

/// What checks get while Redis fails (see the [module docs](self)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RedisFallback {
    /// Report the error; the layer's [`OnStoreError`](super::OnStoreError)
    /// lets the request through (its default) or rejects it with 503.
    Error,
    /// Limit locally with a [`MemoryStore`] until Redis answers again
    /// (each replica then applies the whole quota on its own). The
    /// default: a failing Redis keeps requests limited, never lets them
    /// all through.
    #[default]
    Memory,
}

struct Store {
    backend: RedisBackend,
    script: Script,
    prefix: Box<str>,
    fallback: Option<MemoryStore>,
    deny: Option<DenyCache>,
}

/// A [`RateLimitStore`] in Redis; see the [module docs](self).
///
/// Cheap to clone; clones share the backend (connection, counters) and the
/// deny cache.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Store>,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.inner;
        f.debug_struct("RedisStore")
            .field("backend", &s.backend)
            .field("key_prefix", &s.prefix)
            .field("fallback", &s.fallback.is_some())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://[user:password@]host:port[/db]`)
    /// with the defaults and a backend of its own; connects on first use.
    ///
    /// # Errors
    ///
    /// When `url` does not parse (field `url`).
    pub fn new(url: impl Into<String>) -> Result<Self, ConfigError> {
        Self::builder(url).build()
    }

    /// A builder for a store on the Redis at `url`, with a backend of its
    /// own.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::own(RedisBackend::builder(url))
    }

    /// A builder for a store on a Redis Cluster reached through `nodes`
    /// (some of its nodes' URLs; the rest is discovered), with a backend of
    /// its own.
    pub fn cluster_builder<I, S>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisStoreBuilder::own(RedisBackend::cluster_builder(nodes))
    }

    /// A builder for a store on `backend`, shared with the other
    /// Redis-backed stores of the process.
    pub fn with_backend(backend: RedisBackend) -> RedisStoreBuilder {
        RedisStoreBuilder::shared(backend)
    }

    /// The backend the store runs on.
    pub fn backend(&self) -> &RedisBackend {
        &self.inner.backend
    }

    /// How many calls to Redis failed (timeouts, connection and response
    /// errors) since the backend was built: those of every store sharing
    /// it ([`RedisBackend::failures`]).
    pub fn failures(&self) -> u64 {
        self.inner.backend.failures()
    }

    /// How many limited keys the deny cache remembers now.
    pub fn denied_keys_cached(&self) -> usize {
        self.inner.deny.as_ref().map_or(0, DenyCache::len)
    }

    /// Sends a `PING` within `timeout` (a readiness probe; also starts the
    /// connection): [`RedisBackend::ping`]. Does not count as a failure.
    ///
    /// # Errors
    ///
    /// When Redis does not answer in time, or no tokio runtime runs.
    pub async fn ping(&self, timeout: Duration) -> Result<(), StoreError> {
        self.inner
            .backend
            .ping(timeout)
            .await
            .map_err(|failure| StoreError::with_source(failure.to_string(), failure))
    }
}

/// The Redis key of `key` under `policy`: `<prefix>:{<key>}:<policy>`.
/// The hash tag is the first `{...}`: the prefix has no brace and a
/// [`Key`]'s `Display` form neither, so it is always `{<key>}`.
fn redis_key(prefix: &str, policy: &str, key: &Key) -> String {
    crate::redis::key::tagged_key(prefix, key, policy)
}

/// `EVALSHA <sha> 1 <key> <T ns> <tau ns> <cost> <burst>`, in the order
/// gcra.lua reads its `ARGV`, built in one buffer.
fn gcra_call(script: &Script, key: &str, quota: &Quota, cost: u32) -> ScriptCall {
    // Four integers of at most 20 digits.
    script
        .call_with_capacity(&[key], 4, 4 * 20)
        .arg(quota.interval_nanos().max(1))
        .arg(quota.tolerance_nanos())
        .arg(cost)
        .arg(quota.burst())
}

/// The script's answer `{allowed, remaining, reset_ns, retry_after_ns}`.
fn parse_reply(reply: &[i64]) -> Result<Decision, RedisFailure> {
    let &[allowed, remaining, reset, retry] = reply else {
        return Err(RedisFailure::bad_reply(format!(
            "unexpected script reply of {} values",
            reply.len()
        )));
    };
    let (Ok(remaining), Ok(reset), Ok(retry)) = (
        u64::try_from(remaining),
        u64::try_from(reset),
        u64::try_from(retry),
    ) else {
        return Err(RedisFailure::bad_reply(
            "negative value in the script reply",
        ));
    };
    let reset = Duration::from_nanos(reset);
    match allowed {
        1 => Ok(Decision::allowed(remaining, reset)),
        0 => Ok(Decision::denied(
            remaining,
            reset,
            Duration::from_nanos(retry),
        )),
        other => Err(RedisFailure::bad_reply(format!(
            "unexpected `allowed` value {other} in the script reply"
        ))),
    }
}

impl Store {
    /// What a check gets when Redis did not answer.
    fn fall_back(
        &self,
        failure: RedisFailure,
        local: &Key,
        quota: &Quota,
        cost: u32,
    ) -> Result<Decision, StoreError> {
        match &self.fallback {
            Some(memory) => match memory
                .check(Check::new("", local, quota, cost))
                .into_ready()
            {
                Ok(result) => result,
                Err(_) => Err(StoreError::new("local fallback did not answer at once")),
            },
            None => Err(StoreError::with_source(failure.to_string(), failure)),
        }
    }

    fn remember(&self, local: Key, cost: u32, decision: &Decision) {
        if let Some(deny) = &self.deny {
            if decision.is_allowed() {
                // A cheaper request fitted: a cached denial of this key is
                // stale now.
                deny.remove(&local);
            } else {
                deny.insert(local, cost, decision, Instant::now());
            }
        }
    }
}

impl RateLimitStore for RedisStore {
    fn check(&self, check: Check<'_>) -> StoreFuture {
        let store = &self.inner;
        let local = Key::from_bytes(check.policy.as_bytes()).combine(*check.key);
        if let Some(deny) = &store.deny
            && let Some(decision) = deny.get(&local, check.cost, Instant::now())
        {
            return StoreFuture::ready(Ok(decision));
        }
        let quota = *check.quota;
        let cost = check.cost;
        let key = redis_key(&store.prefix, check.policy, check.key);
        let call = gcra_call(&store.script, &key, &quota, cost);
        match store
            .backend
            .eval_map(call, |reply: Vec<i64>| parse_reply(&reply))
        {
            Err(failure) => StoreFuture::ready(store.fall_back(failure, &local, &quota, cost)),
            Ok(reply) => {
                let store = Arc::clone(store);
                StoreFuture::boxed(async move {
                    match reply.await {
                        Ok(decision) => {
                            store.remember(local, cost, &decision);
                            Ok(decision)
                        }
                        Err(failure) => store.fall_back(failure, &local, &quota, cost),
                    }
                })
            }
        }
    }
}
