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

/// The path under which cache-aside values are kept: HTTP paths start
/// with `/`, so no response shares their keys.
const ASIDE: &str = "aside:";

/// A typed cache-aside handle (from
/// [`ResponseCacheLayer::cache_aside`](super::ResponseCacheLayer::cache_aside)):
/// values are serialised with serde (JSON) into the cache's memory tier,
/// bounded in bytes with the responses. Cheap to clone.
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
}

impl fmt::Debug for CacheAside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheAside").finish_non_exhaustive()
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
        Self { config }
    }

    fn key(&self, key: &str) -> KeyParts {
        let path: Box<str> = format!("{ASIDE}{key}").into();
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

    /// Forgets `key`; whether it was kept.
    pub fn invalidate(&self, key: &str) -> bool {
        let engine = &self.config.engine;
        let path = format!("{ASIDE}{key}");
        engine.purge_group_hash(engine.hasher.uri(&path, "")) > 0
    }

    /// Forgets every value (and stored response) of `group`; how many.
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
        if entry.status == StatusCode::NOT_FOUND {
            return Some(None);
        }
        // A value that no longer reads as `T` (a new version of the type)
        // is loaded again.
        serde_json::from_slice(&entry.body).ok().map(Some)
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
            self.keep(parts, status, body, lifetime, keep.groups);
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
        };
        // Memory only: values are process-local (no Redis write).
        engine.store(entry, None);
    }
}
