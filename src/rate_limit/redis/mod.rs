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
//!   formulas of [`gcra`](super::gcra) with the time of Redis (`TIME`, so
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
//! * Every call has a [timeout](RedisStoreBuilder::timeout) (20 ms by
//!   default), counted from when the check hands its command to the
//!   connection: no request waits on a slow Redis much longer than that.
//!   A timed-out check gets the fallback; one slow reply never switches
//!   the shared limit off (see below).
//!   Concurrent checks share one multiplexed, pipelined connection (a
//!   `redis` `ConnectionManager`, or the Cluster connection), which
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
//! ([`RedisStore::failures`], and `tower_edge.rate_limit.store.errors` with
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
//! The store *trips* only on sustained failure: when calls have kept
//! failing, with no successful reply in between, for
//! [`trip_after`](RedisStoreBuilder::trip_after) (100 ms). A load spike
//! that stalls this process times out every call in flight at once; the
//! replies that follow reset the count, so such a stall costs the checks it
//! hit, not a whole interval. Once tripped, checks skip Redis for
//! [`retry_interval`](RedisStoreBuilder::retry_interval) (250 ms) without
//! waiting on it, logged once per outage.
//!
//! # Default setup
//!
//! Building never connects, so these examples run without a Redis; the
//! first check connects (in a tokio runtime), and
//! [`RedisStore::ping`] can wait for Redis at start-up if you want to.
//!
//! ```
//! use tower_edge::rate_limit::{Policy, Quota, RateLimitLayer, redis::RedisStore};
//!
//! # fn main() -> Result<(), tower_edge::ConfigError> {
//! let store = RedisStore::new("redis://127.0.0.1:6379")?; // does not connect yet
//! let layer = RateLimitLayer::builder()
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
//!     ClientIp, Policy, Quota, RateLimitLayer, SubjectOrIp,
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
//! let layer = RateLimitLayer::builder()
//!     .policy(Policy::new("burst", "10/s burst 20".parse().unwrap()).key(ClientIp).store(store.clone()))
//!     .policy(Policy::new("hourly", Quota::per_hour(1000)).key(SubjectOrIp).store(store.clone()))
//!     .build()?;
//! assert_eq!(store.failures(), 0);
//! # let _ = layer; Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

use super::key::Key;
use super::memory::{DEFAULT_MAX_KEYS, MemoryStore};
use super::quota::Quota;
use super::store::{Check, Decision, RateLimitStore, StoreError, StoreFuture};
use crate::ConfigError;

mod breaker;
#[cfg(test)]
mod tests;

use breaker::Breaker;

/// The GCRA script (see [`gcra`](super::gcra)).
const SCRIPT: &str = include_str!("gcra.lua");

/// Default per-call timeout: well above a healthy Redis's p99 under load
/// (a timeout trips the [`retry_interval`](RedisStoreBuilder::retry_interval)),
/// short enough that a stalled Redis costs a request at most 20 ms.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(20);
/// Default key prefix; give each application sharing a Redis its own.
pub const DEFAULT_KEY_PREFIX: &str = "tower-edge:rl";
/// Default pause after the store trips before checks try Redis again.
pub const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(250);
/// Default time calls must keep failing, without a success, before the
/// store trips (see [`RedisStoreBuilder::trip_after`]).
pub const DEFAULT_TRIP_AFTER: Duration = Duration::from_millis(100);
/// Default number of limited keys remembered locally.
pub const DEFAULT_DENY_CACHE_CAPACITY: usize = 10_000;

const MAX_PREFIX_LEN: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

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

enum Target {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    /// Sends one check's `EVALSHA`; on `NOSCRIPT` (after `SCRIPT FLUSH`, a
    /// restart or a failover) sends the same check as `EVAL` with the
    /// script's text, which runs it and caches it in one command: no
    /// window between loading and running for another flush to fall into.
    async fn run(
        &mut self,
        evalsha: &redis::Cmd,
        eval: impl FnOnce() -> redis::Cmd,
    ) -> redis::RedisResult<Vec<i64>> {
        let first = self.query(evalsha).await;
        match first {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.query(&eval()).await
            }
            other => other,
        }
    }

    async fn query(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<Vec<i64>> {
        match self {
            Self::Single(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => cmd.query_async(conn).await,
        }
    }

    async fn ping(&mut self) -> redis::RedisResult<()> {
        let cmd = redis::cmd("PING");
        match self {
            Self::Single(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => cmd.query_async(conn).await,
        }
    }
}

/// A remembered denial: until `retry_at`, requests of at least `cost` are
/// denied without asking Redis.
#[derive(Clone, Copy)]
struct Denied {
    retry_at: Instant,
    reset_at: Instant,
    remaining: u64,
    cost: u32,
}

/// The least time between two sweeps of a full deny cache for expired
/// entries: a sweep reads every entry under the lock, and clients choosing
/// many limited keys must not make every denial pay for one.
const DENY_SWEEP_INTERVAL: Duration = Duration::from_secs(1);

struct DenyCache {
    capacity: usize,
    entries: Mutex<DenyEntries>,
}

#[derive(Default)]
struct DenyEntries {
    map: HashMap<Key, Denied>,
    last_sweep: Option<Instant>,
    /// Sweeps so far.
    #[cfg(test)]
    sweeps: u64,
}

impl DenyCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: Mutex::new(DenyEntries::default()),
        }
    }

    fn get(&self, key: &Key, cost: u32, now: Instant) -> Option<Decision> {
        let mut guard = crate::sync::lock(&self.entries);
        let entries = &mut guard.map;
        let entry = *entries.get(key)?;
        if now >= entry.retry_at {
            entries.remove(key);
            return None;
        }
        (cost >= entry.cost).then(|| {
            Decision::denied(
                entry.remaining,
                entry.reset_at.saturating_duration_since(now),
                entry.retry_at - now,
            )
        })
    }

    fn insert(&self, key: Key, cost: u32, decision: &Decision, now: Instant) {
        if decision.retry_after().is_zero() {
            return;
        }
        let mut guard = crate::sync::lock(&self.entries);
        let state = &mut *guard;
        if state.map.len() >= self.capacity && !state.map.contains_key(&key) {
            // Full: drop the expired entries, at most once per interval...
            if state
                .last_sweep
                .is_none_or(|last| now.saturating_duration_since(last) >= DENY_SWEEP_INTERVAL)
            {
                state.map.retain(|_, e| e.retry_at > now);
                state.last_sweep = Some(now);
                #[cfg(test)]
                {
                    state.sweeps += 1;
                }
            }
            // ...and else any one entry: the newest denial is the likeliest
            // to be asked about again, and the work stays constant.
            if state.map.len() >= self.capacity
                && let Some(victim) = state.map.keys().next().copied()
            {
                state.map.remove(&victim);
            }
        }
        state.map.insert(
            key,
            Denied {
                retry_at: now + decision.retry_after(),
                reset_at: now + decision.reset(),
                remaining: decision.remaining(),
                cost,
            },
        );
    }

    fn remove(&self, key: &Key) {
        let mut entries = crate::sync::lock(&self.entries);
        if !entries.map.is_empty() {
            entries.map.remove(key);
        }
    }

    fn len(&self) -> usize {
        crate::sync::lock(&self.entries).map.len()
    }
}

struct Shared {
    target: Target,
    conn: OnceLock<Conn>,
    /// Serialises starting the connection. Held only around synchronous
    /// code (no `.await`, no I/O): concurrent first callers wait
    /// microseconds for the connection instead of failing.
    starting: Mutex<()>,
    connecting: AtomicBool,
    script: redis::Script,
    prefix: Box<str>,
    timeout: Duration,
    fallback: Option<MemoryStore>,
    deny: Option<DenyCache>,
    failures: AtomicU64,
    breaker: Breaker,
    /// Tripped and not answered since (for logging once per outage).
    down: AtomicBool,
    #[cfg(feature = "otel")]
    metrics: Option<crate::otel::EdgeMetrics>,
}

/// A [`RateLimitStore`] in Redis; see the [module docs](self).
///
/// Cheap to clone; clones share the connection, the counters and the deny
/// cache.
#[derive(Clone)]
pub struct RedisStore {
    shared: Arc<Shared>,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.shared;
        f.debug_struct("RedisStore")
            .field(
                "target",
                &match s.target {
                    Target::Single(_) => "single",
                    Target::Cluster(_) => "cluster",
                },
            )
            .field("key_prefix", &s.prefix)
            .field("timeout", &s.timeout)
            .field("fallback", &s.fallback.is_some())
            .field("failures", &s.failures.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisStore`]; from [`RedisStore::builder`] or
/// [`RedisStore::cluster_builder`].
pub struct RedisStoreBuilder {
    nodes: Vec<String>,
    cluster: bool,
    prefix: String,
    timeout: Duration,
    retry_interval: Duration,
    trip_after: Duration,
    fallback: RedisFallback,
    fallback_max_keys: usize,
    deny_cache_capacity: usize,
    #[cfg(feature = "otel")]
    metrics: Option<crate::otel::EdgeMetrics>,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("nodes", &self.nodes.len())
            .field("cluster", &self.cluster)
            .field("key_prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .field("retry_interval", &self.retry_interval)
            .field("trip_after", &self.trip_after)
            .field("fallback", &self.fallback)
            .field("deny_cache_capacity", &self.deny_cache_capacity)
            .finish_non_exhaustive()
    }
}

impl RedisStoreBuilder {
    fn with_nodes(nodes: Vec<String>, cluster: bool) -> Self {
        Self {
            nodes,
            cluster,
            prefix: DEFAULT_KEY_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            retry_interval: DEFAULT_RETRY_INTERVAL,
            trip_after: DEFAULT_TRIP_AFTER,
            fallback: RedisFallback::default(),
            fallback_max_keys: DEFAULT_MAX_KEYS,
            deny_cache_capacity: DEFAULT_DENY_CACHE_CAPACITY,
            #[cfg(feature = "otel")]
            metrics: None,
        }
    }

    /// The prefix of every key (default [`DEFAULT_KEY_PREFIX`]): give each
    /// application sharing a Redis its own. 1 to 64 printable ASCII
    /// characters, without spaces, `{` or `}`.
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The most a check waits for Redis's reply (default
    /// [`DEFAULT_TIMEOUT`], 20 ms; 1 ms to 60 s). The time starts when the
    /// check hands its command to the connection, and a reply that arrived
    /// while this process waited for a CPU still counts (the check gets one
    /// more turn of the scheduler before it times out). A timed-out check
    /// counts as a failure and gets the [fallback](Self::fallback); it does
    /// not trip the store on its own (see [`trip_after`](Self::trip_after)).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long checks skip Redis once the store has tripped, before trying
    /// it again (default [`DEFAULT_RETRY_INTERVAL`]; zero never trips: every
    /// check tries Redis).
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// How long calls must keep failing, with no successful reply in
    /// between, before the store trips and skips Redis for the
    /// [`retry_interval`](Self::retry_interval) (default
    /// [`DEFAULT_TRIP_AFTER`], 100 ms; at most 60 s; zero trips on the first
    /// failure). A burst of timeouts from one scheduling stall, followed by
    /// replies, does not trip it; a Redis that is down or stalled does.
    pub fn trip_after(mut self, duration: Duration) -> Self {
        self.trip_after = duration;
        self
    }

    /// What checks get while Redis fails (default [`RedisFallback::Memory`]).
    pub fn fallback(mut self, fallback: RedisFallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// The key cap of the local [`MemoryStore`] of
    /// [`RedisFallback::Memory`] (default [`DEFAULT_MAX_KEYS`]).
    pub fn fallback_max_keys(mut self, max_keys: usize) -> Self {
        self.fallback_max_keys = max_keys;
        self
    }

    /// How many limited keys are remembered locally so their requests are
    /// denied without a round trip until their `Retry-After` passes
    /// (default [`DEFAULT_DENY_CACHE_CAPACITY`]; 0 turns the cache off).
    /// When full, expired denials are swept at most once a second, and a
    /// new denial otherwise takes the place of an arbitrary one.
    pub fn deny_cache_capacity(mut self, capacity: usize) -> Self {
        self.deny_cache_capacity = capacity;
        self
    }

    /// Reports each failed Redis call to
    /// `tower_edge.rate_limit.store.errors` with `error.type` `timeout`,
    /// `connection` or `response`.
    #[cfg(feature = "otel")]
    pub fn metrics(mut self, metrics: crate::otel::EdgeMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Checks the configuration and builds the store, without connecting.
    ///
    /// # Errors
    ///
    /// A URL that does not parse (`url`), no Cluster node (`cluster_nodes`),
    /// a bad `key_prefix`, a `timeout` outside 1 ms..=60 s, a
    /// `fallback_max_keys` of 0.
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        validate_prefix(&self.prefix)?;
        if self.timeout < Duration::from_millis(1) || self.timeout > Duration::from_secs(60) {
            return Err(ConfigError::new("timeout", "must be between 1 ms and 60 s"));
        }
        if self.fallback_max_keys == 0 {
            return Err(ConfigError::new("fallback_max_keys", "must be at least 1"));
        }
        if self.trip_after > Duration::from_secs(60) {
            return Err(ConfigError::new("trip_after", "must be at most 60 s"));
        }
        if self.retry_interval > Duration::from_secs(3600) {
            return Err(ConfigError::new("retry_interval", "must be at most 1 h"));
        }
        let target = if self.cluster {
            if self.nodes.is_empty() {
                return Err(ConfigError::new(
                    "cluster_nodes",
                    "give at least one node URL",
                ));
            }
            let client = ClusterClient::builder(self.nodes.iter().map(String::as_str))
                .connection_timeout(CONNECT_TIMEOUT)
                .response_timeout(self.timeout.max(Duration::from_millis(100)))
                .retries(1)
                .build()
                .map_err(|e| ConfigError::new("cluster_nodes", redact(&e)))?;
            Target::Cluster(Box::new(client))
        } else {
            let url = self.nodes.first().map_or("", String::as_str);
            let client =
                redis::Client::open(url).map_err(|e| ConfigError::new("url", redact(&e)))?;
            Target::Single(client)
        };
        Ok(RedisStore {
            shared: Arc::new(Shared {
                target,
                conn: OnceLock::new(),
                starting: Mutex::new(()),
                connecting: AtomicBool::new(false),
                script: redis::Script::new(SCRIPT),
                prefix: self.prefix.into_boxed_str(),
                timeout: self.timeout,
                fallback: (self.fallback == RedisFallback::Memory).then(|| {
                    MemoryStore::builder()
                        .max_keys(self.fallback_max_keys)
                        .build()
                }),
                deny: (self.deny_cache_capacity > 0)
                    .then(|| DenyCache::new(self.deny_cache_capacity)),
                failures: AtomicU64::new(0),
                breaker: Breaker::new(self.trip_after, self.retry_interval),
                down: AtomicBool::new(false),
                #[cfg(feature = "otel")]
                metrics: self.metrics,
            }),
        })
    }
}

/// The error's kind and category only: a URL may carry a password.
fn redact(error: &redis::RedisError) -> String {
    format!("invalid Redis URL ({:?})", error.kind())
}

fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err(ConfigError::new(
            "key_prefix",
            format!("must be 1 to {MAX_PREFIX_LEN} characters"),
        ));
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
    {
        return Err(ConfigError::new(
            "key_prefix",
            "must be printable ASCII without spaces, `{` or `}` (braces would break the Cluster hash tag)",
        ));
    }
    Ok(())
}

/// The Redis key of `key` under `policy`: `<prefix>:{<key>}:<policy>`.
/// The hash tag is the first `{...}`: the prefix has no brace and a
/// [`Key`]'s `Display` form neither, so it is always `{<key>}`.
fn redis_key(prefix: &str, policy: &str, key: &Key) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(prefix.len() + policy.len() + 48);
    let _ = write!(out, "{prefix}:{{{key}}}:{policy}");
    out
}

/// `EVALSHA <sha> 1 <key> <T ns> <tau ns> <cost> <burst>` (or `EVAL
/// <script> ...`), built in one buffer (what `redis::Script::key(..).arg(..)`
/// sends, without its per-argument vectors and the copy into a command).
fn eval_cmd(command: &str, sha_or_script: &str, key: &str, quota: &Quota, cost: u32) -> redis::Cmd {
    // Command name, sha, numkeys, key and four integers of at most 20 digits.
    let mut cmd = redis::Cmd::with_capacity(8, 7 + sha_or_script.len() + 1 + key.len() + 4 * 20);
    cmd.arg(command)
        .arg(sha_or_script)
        .arg(1)
        .arg(key)
        .arg(quota.interval_nanos().max(1))
        .arg(quota.tolerance_nanos())
        .arg(cost)
        .arg(quota.burst());
    cmd
}

/// The script's answer `{allowed, remaining, reset_ns, retry_after_ns}`.
fn parse_reply(reply: &[i64]) -> Result<Decision, StoreError> {
    let &[allowed, remaining, reset, retry] = reply else {
        return Err(StoreError::new(format!(
            "unexpected script reply of {} values",
            reply.len()
        )));
    };
    let (Ok(remaining), Ok(reset), Ok(retry)) = (
        u64::try_from(remaining),
        u64::try_from(reset),
        u64::try_from(retry),
    ) else {
        return Err(StoreError::new("negative value in the script reply"));
    };
    let reset = Duration::from_nanos(reset);
    match allowed {
        1 => Ok(Decision::allowed(remaining, reset)),
        0 => Ok(Decision::denied(
            remaining,
            reset,
            Duration::from_nanos(retry),
        )),
        other => Err(StoreError::new(format!(
            "unexpected `allowed` value {other} in the script reply"
        ))),
    }
}

enum Failure {
    Timeout,
    /// The first connection is still being made (Redis Cluster): no call
    /// failed, so nothing is counted or logged; a failed connect attempt is.
    Connecting,
    Connection(String),
    Response(redis::RedisError),
    NoRuntime,
    Down,
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connecting | Self::Connection(_) | Self::NoRuntime | Self::Down => "connection",
            Self::Response(e) if e.is_io_error() || e.is_connection_dropped() => "connection",
            Self::Response(_) => "response",
        }
    }

    fn into_error(self, timeout: Duration) -> StoreError {
        match self {
            Self::Timeout => StoreError::new(format!("Redis did not answer within {timeout:?}")),
            Self::Connecting => StoreError::new("still connecting to Redis"),
            Self::Connection(message) => StoreError::new(message),
            Self::Response(e) => StoreError::with_source("Redis call failed", e),
            Self::NoRuntime => StoreError::new("the Redis store needs a tokio runtime to connect"),
            Self::Down => StoreError::new("Redis is unavailable; retrying soon"),
        }
    }
}

impl Shared {
    fn is_down(&self) -> bool {
        self.breaker.is_open()
    }

    /// The connection, starting it on first use.
    fn connection(self: &Arc<Self>) -> Result<Conn, Failure> {
        if let Some(conn) = self.conn.get() {
            return Ok(conn.clone());
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(Failure::NoRuntime);
        };
        // A Cluster connection is made in its own task: while it is, answer
        // without the lock (the wait may be long when the cluster is down).
        if matches!(self.target, Target::Cluster(_)) && self.connecting.load(Ordering::Acquire) {
            return self.conn.get().cloned().ok_or(Failure::Connecting);
        }
        let _starting = crate::sync::lock(&self.starting);
        if let Some(conn) = self.conn.get() {
            // Another caller started it while this one waited.
            return Ok(conn.clone());
        }
        // Only a Cluster connection is still being made (asynchronously).
        if self.connecting.swap(true, Ordering::AcqRel) {
            return self.conn.get().cloned().ok_or(Failure::Connecting);
        }
        match &self.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_number_of_retries(3)
                    .set_min_delay(Duration::from_millis(50))
                    .set_max_delay(Duration::from_millis(500));
                let manager = {
                    let _entered = runtime.enter();
                    ConnectionManager::new_lazy_with_config(client.clone(), config)
                };
                let manager = match manager {
                    Ok(manager) => manager,
                    Err(e) => {
                        self.connecting.store(false, Ordering::Release);
                        return Err(Failure::Response(e));
                    }
                };
                let conn = self.conn.get_or_init(|| Conn::Single(manager)).clone();
                // Drive the lazy connection now, not on the first request's
                // budget.
                let mut warm = conn.clone();
                runtime.spawn(async move { warm.ping().await });
                Ok(conn)
            }
            Target::Cluster(client) => {
                let client = ClusterClient::clone(client);
                let weak = Arc::downgrade(self);
                runtime.spawn(connect_cluster(client, weak));
                Err(Failure::Connecting)
            }
        }
    }

    fn failed(&self, failure: &Failure) {
        if matches!(failure, Failure::Connecting) {
            // Not a failure of Redis: the connect attempt reports its own.
            tracing::debug!("rate limit: Redis not connected yet; falling back meanwhile");
            return;
        }
        if matches!(failure, Failure::Down) {
            return;
        }
        self.failures.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "otel")]
        if let Some(metrics) = &self.metrics {
            metrics.store_error(failure.kind());
        }
        let fallback = if self.fallback.is_some() {
            "memory"
        } else {
            "error"
        };
        if self.breaker.failure() && !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error.type = failure.kind(),
                fallback,
                "rate limit: Redis store unavailable; logged once until it answers again"
            );
        } else {
            tracing::debug!(error.type = failure.kind(), fallback, "rate limit: Redis call failed");
        }
    }

    fn answered(&self) {
        self.breaker.success();
        if self.down.load(Ordering::Relaxed) && self.down.swap(false, Ordering::Relaxed) {
            tracing::info!("rate limit: Redis store answers again");
        }
    }

    fn fall_back(
        &self,
        failure: Failure,
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
            None => Err(failure.into_error(self.timeout)),
        }
    }
}

async fn connect_cluster(client: ClusterClient, shared: Weak<Shared>) {
    let mut pause = Duration::from_millis(50);
    loop {
        match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_connection()).await {
            Ok(Ok(conn)) => {
                if let Some(shared) = shared.upgrade() {
                    let _ = shared.conn.set(Conn::Cluster(conn));
                }
                return;
            }
            Ok(Err(error)) => {
                // Debug of the text (escaped): it may quote the server.
                tracing::debug!(
                    error = ?error.to_string(),
                    "rate limit: Redis Cluster connect failed"
                );
                if let Some(shared) = shared.upgrade() {
                    shared.failed(&Failure::Response(error));
                }
            }
            Err(_) => {
                tracing::debug!("rate limit: Redis Cluster connect timed out");
                if let Some(shared) = shared.upgrade() {
                    shared.failed(&Failure::Timeout);
                }
            }
        }
        if shared.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// `call` within `timeout`, counted from its first poll (when the command
/// is handed to the connection). When the timer fires, the call gets one
/// more turn of the scheduler: a reply the connection received while this
/// task waited for a CPU is not a Redis timeout.
async fn within<F: Future>(timeout: Duration, call: F) -> Result<F::Output, ()> {
    let mut call = std::pin::pin!(call);
    if let Ok(output) = tokio::time::timeout(timeout, call.as_mut()).await {
        return Ok(output);
    }
    tokio::task::yield_now().await;
    // A zero timeout polls `call` once more before it gives up.
    tokio::time::timeout(Duration::ZERO, call)
        .await
        .map_err(|_| ())
}

impl RedisStore {
    /// A store on the Redis at `url` (`redis://[user:password@]host:port[/db]`)
    /// with the defaults; connects on first use.
    ///
    /// # Errors
    ///
    /// When `url` does not parse (field `url`).
    pub fn new(url: impl Into<String>) -> Result<Self, ConfigError> {
        Self::builder(url).build()
    }

    /// A builder for a store on the Redis at `url`.
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder::with_nodes(vec![url.into()], false)
    }

    /// A builder for a store on a Redis Cluster reached through `nodes`
    /// (some of its nodes' URLs; the rest is discovered).
    pub fn cluster_builder<I, S>(nodes: I) -> RedisStoreBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RedisStoreBuilder::with_nodes(nodes.into_iter().map(Into::into).collect(), true)
    }

    /// How many calls to Redis failed (timeouts, connection and response
    /// errors) since the store was built.
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(Ordering::Relaxed)
    }

    /// How many limited keys the deny cache remembers now.
    pub fn denied_keys_cached(&self) -> usize {
        self.shared.deny.as_ref().map_or(0, DenyCache::len)
    }

    /// Sends a `PING` within `timeout` (a readiness probe; also starts the
    /// connection). Does not count as a failure.
    ///
    /// # Errors
    ///
    /// When Redis does not answer in time, or no tokio runtime runs.
    pub async fn ping(&self, timeout: Duration) -> Result<(), StoreError> {
        // A huge timeout waits "forever" rather than overflowing.
        let now = tokio::time::Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or_else(|| now + Duration::from_secs(366 * 24 * 3600));
        loop {
            match self.shared.connection() {
                Ok(mut conn) => {
                    return match tokio::time::timeout_at(deadline, conn.ping()).await {
                        Ok(Ok(())) => {
                            self.shared.answered();
                            Ok(())
                        }
                        Ok(Err(e)) => Err(StoreError::with_source("Redis PING failed", e)),
                        Err(_) => Err(StoreError::new("Redis did not answer PING in time")),
                    };
                }
                Err(Failure::Connecting | Failure::Connection(_))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(failure) => return Err(failure.into_error(timeout)),
            }
        }
    }
}

impl RateLimitStore for RedisStore {
    fn check(&self, check: Check<'_>) -> StoreFuture {
        let shared = &self.shared;
        let local = Key::from_bytes(check.policy.as_bytes()).combine(*check.key);
        if let Some(deny) = &shared.deny
            && let Some(decision) = deny.get(&local, check.cost, Instant::now())
        {
            return StoreFuture::ready(Ok(decision));
        }
        let quota = *check.quota;
        let cost = check.cost;
        if shared.is_down() {
            return StoreFuture::ready(shared.fall_back(Failure::Down, &local, &quota, cost));
        }
        let conn = match shared.connection() {
            Ok(conn) => conn,
            Err(failure) => {
                shared.failed(&failure);
                return StoreFuture::ready(shared.fall_back(failure, &local, &quota, cost));
            }
        };
        let key = redis_key(&shared.prefix, check.policy, check.key);
        let shared = Arc::clone(shared);
        StoreFuture::boxed(async move {
            let mut conn = conn;
            let evalsha = eval_cmd("EVALSHA", shared.script.get_hash(), &key, &quota, cost);
            let eval = || eval_cmd("EVAL", SCRIPT, &key, &quota, cost);
            let outcome = within(shared.timeout, conn.run(&evalsha, eval)).await;
            let failure = match outcome {
                Ok(Ok(reply)) => match parse_reply(&reply) {
                    Ok(decision) => {
                        shared.answered();
                        if let Some(deny) = &shared.deny {
                            if decision.is_allowed() {
                                // A cheaper request fitted: a cached denial of
                                // this key is stale now.
                                deny.remove(&local);
                            } else {
                                deny.insert(local, cost, &decision, Instant::now());
                            }
                        }
                        return Ok(decision);
                    }
                    Err(error) => Failure::Connection(error.to_string()),
                },
                Ok(Err(error)) => Failure::Response(error),
                Err(_) => Failure::Timeout,
            };
            shared.failed(&failure);
            shared.fall_back(failure, &local, &quota, cost)
        })
    }
}
