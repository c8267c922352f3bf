//! Cache-aside for handlers, on the response cache's engine: what users
//! write by hand around `redis.get("user:42")`, with one load per key in
//! the process and invalidation by key or group.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use super::Config;
use super::directives::Verdict;
use super::engine::Counters;
use super::entry::{Entry, KeyParts};
use super::flight::Join;
use super::memory::Lookup;
use super::remote_fill::RemoteFill;

/// The path under which cache-aside values are kept: HTTP paths start
/// with `/`, so no response shares their keys.
const ASIDE: &str = "aside:";

/// A typed cache-aside handle (from
/// [`ResponseCacheLayer::cache_aside`](super::ResponseCacheLayer::cache_aside)):
/// values are serialised with serde (JSON) into the cache's memory tier,
/// bounded in bytes with the responses; with
/// [`across_replicas`](Self::across_replicas), into the layer's Redis tier
/// too. Invalidations reach every replica when the layer has a Redis tier.
/// Cheap to clone.
///
/// ```
/// use std::time::Duration;
/// use tower_edge::response_cache::ResponseCacheLayer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let cache = ResponseCacheLayer::new().cache_aside();
/// let load = || async { Ok::<_, std::io::Error>(vec![1, 2, 3]) }; // the database
/// let first: Vec<u32> = cache.get_or_load("user:42", Duration::from_secs(30), load).await.unwrap();
/// let not_again = || async { Ok::<_, std::io::Error>(vec![9]) }; // not called: kept
/// let again: Vec<u32> = cache.get_or_load("user:42", Duration::from_secs(30), not_again).await.unwrap();
/// assert_eq!(first, again);
/// cache.invalidate("user:42");
/// # }
/// ```
#[derive(Clone)]
pub struct CacheAside {
    config: Arc<Config>,
    across_replicas: bool,
}

impl fmt::Debug for CacheAside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheAside")
            .field("across_replicas", &self.across_replicas)
            .finish_non_exhaustive()
    }
}

/// How a value is kept: lifetime, negative lifetime, groups.
#[derive(Debug, Clone, Copy)]
struct Keep<'a> {
    ttl: Duration,
    negative_ttl: Option<Duration>,
    groups: &'a [&'a str],
}

impl CacheAside {
    pub(super) fn new(config: Arc<Config>) -> Self {
        Self {
            config,
            across_replicas: false,
        }
    }

    /// Keeps values in the layer's Redis tier too, so that a replica finds
    /// what another loaded, and loads each key once across replicas: a
    /// miss in memory looks in Redis; when Redis has nothing, the replica
    /// that gets the tier's fill lease loads while the others wait for its
    /// value (at most the layer's `lock_timeout`, then they load too).
    ///
    /// Without a Redis tier this changes nothing. When Redis fails the
    /// value is loaded and kept in this process only, counted in
    /// [`CacheStats::redis_bypassed`](super::CacheStats::redis_bypassed).
    ///
    /// ```
    /// # #[cfg(feature = "redis")] {
    /// use tower_edge::redis::RedisBackend;
    /// use tower_edge::response_cache::ResponseCacheLayer;
    ///
    /// # fn main() -> Result<(), tower_edge::ConfigError> {
    /// let backend = RedisBackend::builder("redis://127.0.0.1:6379").build()?; // does not connect
    /// let layer = ResponseCacheLayer::builder().redis(backend).build()?;
    /// let products = layer.cache_aside().across_replicas();
    /// # let _ = products; Ok(()) }
    /// # main().unwrap(); }
    /// ```
    #[must_use]
    pub fn across_replicas(mut self) -> Self {
        self.across_replicas = true;
        self
    }

    fn key(&self, key: &str) -> KeyParts {
        // One exact-size allocation (the key keeps its path).
        let mut path = String::with_capacity(ASIDE.len() + key.len());
        path.push_str(ASIDE);
        path.push_str(key);
        let path = path.into_boxed_str();
        KeyParts {
            hash: self.config.engine.hasher.primary(&path, "", None),
            path,
            query: "".into(),
            subject: None,
        }
    }

    /// The value of `key`, or `load`ed and kept for `ttl`. Concurrent
    /// calls for one key in this process run `load` once; the others wait
    /// for it (at most the layer's `lock_timeout`, then they load too). A
    /// failed load is not kept.
    ///
    /// # Errors
    ///
    /// What `load` returned.
    pub async fn get_or_load<T, E, F, Fut>(&self, key: &str, ttl: Duration, load: F) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let keep = Keep {
            ttl,
            negative_ttl: None,
            groups: &[],
        };
        let value = self
            .load(key, keep, || async { load().await.map(Some) })
            .await?;
        Ok(value.expect("a value: no negative caching here"))
    }

    /// [`get_or_load`](Self::get_or_load) for a value that may not exist:
    /// a `None` is kept for `negative_ttl` (negative caching: a missing
    /// row asked for again and again costs one load per `negative_ttl`).
    ///
    /// # Errors
    ///
    /// What `load` returned.
    pub async fn get_or_load_optional<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        negative_ttl: Duration,
        load: F,
    ) -> Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let keep = Keep {
            ttl,
            negative_ttl: Some(negative_ttl),
            groups: &[],
        };
        self.load(key, keep, load).await
    }

    /// [`get_or_load`](Self::get_or_load), the value put in `groups`
    /// (purged with [`invalidate_group`](Self::invalidate_group), or by a
    /// `Cache-Group-Invalidation` naming one of them, RFC 9875 §3).
    ///
    /// # Errors
    ///
    /// What `load` returned.
    pub async fn get_or_load_in<T, E, F, Fut>(
        &self,
        key: &str,
        ttl: Duration,
        groups: &[&str],
        load: F,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let keep = Keep {
            ttl,
            negative_ttl: None,
            groups,
        };
        let value = self
            .load(key, keep, || async { load().await.map(Some) })
            .await?;
        Ok(value.expect("a value: no negative caching here"))
    }

    /// Forgets `key`, here and (with a Redis tier) in Redis and on every
    /// replica, in the background; whether this process kept it.
    pub fn invalidate(&self, key: &str) -> bool {
        self.config.engine.purge_uri(&format!("{ASIDE}{key}"), "") > 0
    }

    /// Forgets every value (and stored response) of `group`, here and
    /// (with a Redis tier) in Redis and on every replica, in the
    /// background; how many this process kept.
    pub fn invalidate_group(&self, group: &str) -> usize {
        self.config.engine.purge_group(group)
    }

    /// The kept value of `key`: `Some(Some(v))`, a kept `None`
    /// (`Some(None)`), or nothing usable (`None`).
    fn kept<T: DeserializeOwned>(&self, key: &KeyParts) -> Option<Option<T>> {
        let engine = &self.config.engine;
        let now = Instant::now();
        let Lookup::Found(entry) =
            engine
                .memory
                .lookup(key.hash, |e| e.key == *key, &HeaderMap::new(), now)
        else {
            return None;
        };
        if !entry.is_fresh(now) {
            return None;
        }
        value_of(&entry)
    }

    async fn load<T, E, F, Fut>(&self, key: &str, keep: Keep<'_>, load: F) -> Result<Option<T>, E>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<T>, E>>,
    {
        let parts = self.key(key);
        let engine = &self.config.engine;
        if let Some(value) = self.kept(&parts) {
            Counters::add(&engine.counters.hits);
            return Ok(value);
        }
        let guard = match engine.flights.join(parts.hash) {
            Join::Lead(guard) => Some(guard),
            Join::Follow(flight) => {
                let wait = std::future::poll_fn(|cx| flight.poll_done(cx));
                let _ = tokio::time::timeout(self.config.lock_timeout, wait).await;
                if let Some(value) = self.kept(&parts) {
                    Counters::add(&engine.counters.collapsed);
                    return Ok(value);
                }
                None
            }
        };
        let remote = match self.shared(&parts).await {
            Ok(value) => {
                Counters::add(&engine.counters.hits);
                return Ok(value);
            }
            Err(remote) => remote,
        };
        Counters::add(&engine.counters.misses);
        let value = load().await?;
        let (status, body, lifetime) = match &value {
            Some(value) => match serde_json::to_vec(value) {
                Ok(body) => (StatusCode::OK, Bytes::from(body), Some(keep.ttl)),
                Err(_) => (StatusCode::OK, Bytes::new(), None),
            },
            None => (StatusCode::NOT_FOUND, Bytes::new(), keep.negative_ttl),
        };
        if let Some(lifetime) = lifetime.filter(|l| !l.is_zero()) {
            self.keep(parts, status, body, lifetime, keep.groups, remote);
        }
        drop(guard);
        Ok(value)
    }

    fn keep(
        &self,
        key: KeyParts,
        status: StatusCode,
        body: Bytes,
        lifetime: Duration,
        groups: &[&str],
        remote: RemoteFill,
    ) {
        let engine = &self.config.engine;
        let mut hashes = vec![engine.hasher.uri(&key.path, "")];
        hashes.extend(groups.iter().map(|g| engine.hasher.group(g)));
        let size = 256 + key.path.len() + body.len();
        let entry = Entry {
            key,
            vary: Box::new([]),
            status,
            headers: HeaderMap::new(),
            body,
            stored_at: Instant::now(),
            verdict: Verdict {
                lifetime,
                initial_age: Duration::ZERO,
                stale_while_revalidate: Duration::ZERO,
                stale_if_error: Duration::ZERO,
                must_revalidate: false,
                no_cache: false,
                shareable_with_authorization: true,
            },
            etag: None,
            last_modified: None,
            groups: hashes.into_boxed_slice(),
            group_names: groups.iter().map(|g| Box::<str>::from(*g)).collect(),
            size,
            head: Default::default(),
        };
        // In Redis too only `across_replicas` (`remote` says so).
        engine.store(entry, remote.take_for_store());
    }

    /// The step in the Redis tier after a miss in memory: `Ok` with the
    /// value another replica kept, or `Err` with where the loaded value
    /// goes (the fill lease is released if the load fails or is not kept).
    #[cfg(feature = "redis")]
    async fn shared<T: DeserializeOwned>(&self, parts: &KeyParts) -> Result<Option<T>, RemoteFill> {
        use super::aside_remote::{Shared, lookup, subscribe};
        let engine = &self.config.engine;
        subscribe(engine);
        if !self.across_replicas {
            return Err(RemoteFill::none());
        }
        match lookup(engine, parts, self.config.lock_timeout).await {
            Shared::Kept(entry) => value_of(&entry).ok_or_else(RemoteFill::unleased),
            Shared::Load(remote) => Err(remote),
            Shared::Local => Err(RemoteFill::none()),
        }
    }

    #[cfg(not(feature = "redis"))]
    async fn shared<T: DeserializeOwned>(
        &self,
        _parts: &KeyParts,
    ) -> Result<Option<T>, RemoteFill> {
        Err(RemoteFill::none())
    }
}

/// The value an entry holds: `Some(Some(v))`, a kept `None` (`Some(None)`),
/// or `None` when the bytes no longer read as `T` (a new version of the
/// type: loaded again).
fn value_of<T: DeserializeOwned>(entry: &Entry) -> Option<Option<T>> {
    if entry.status == StatusCode::NOT_FOUND {
        return Some(None);
    }
    serde_json::from_slice(&entry.body).ok().map(Some)
}
