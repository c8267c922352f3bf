//! A shared response cache (RFC 9111) in the process: GET and HEAD
//! answered from stored responses, one fill per key, stale serving
//! (RFC 5861), `Cache-Status` (RFC 9211), purge by group (RFC 9875).
//!
//! [`ResponseCacheLayer`] sits after authentication and the limits, right
//! outside [`CacheHeadersLayer`](crate::cache_headers::CacheHeadersLayer)
//! (so it stores the `Cache-Control` and `ETag` that layer gives the
//! handler's answer):
//!
//! * **What is stored**: responses to GET with a status RFC 9110 §15.1
//!   calls heuristically cacheable (200, 203, 204, 300, 301, 308, 404,
//!   405, 410, 414, 501; never 206, 401, 403, 429 or 503) and an explicit
//!   lifetime: `s-maxage`, else `max-age`, else `Expires` minus `Date`
//!   (RFC 9111 §4.2.1), or the cache's **targeted field** (RFC 9213,
//!   [`TARGETED_FIELD`] `Edge-Cache-Control` by default, e.g.
//!   `Edge-Cache-Control: max-age=30`), which replaces `Cache-Control` for
//!   this cache only and is removed from the response; or a
//!   [`ResponseCacheRule::lifetime`] set in code. Never stored: `no-store`,
//!   `private`, `Set-Cookie`, `Vary: *`, more than 8 `Vary` names, bodies
//!   larger than the entry cap ([`DEFAULT_MAX_ENTRY_BYTES`], 1 MiB),
//!   `text/event-stream` and upgrades. `no-store` and `private` in
//!   `Cache-Control` keep a response out even when the targeted field
//!   gives it a lifetime (stricter than RFC 9213 §2.2, on purpose). A
//!   `no-cache` response is stored but never served without the handler
//!   (it is only kept for `stale-if-error`).
//! * **Keys**: the path, the query ([`QueryKey`]: sorted by default) and,
//!   for [`per_subject`](ResponseCacheRule::per_subject) rules, the
//!   request's [`Subject`](crate::Subject); the request fields named by
//!   the response's `Vary` are the secondary key (RFC 9111 §4.1). HEAD is
//!   answered from GET's entries.
//! * **`Authorization`** (RFC 9111 §3.5): a request carrying it is served
//!   a shared entry only when the response said `public`, `s-maxage` or
//!   `must-revalidate`, and its own response is stored only then.
//! * **One fill per key**: concurrent misses of a key run the handler
//!   once; the others wait (at most [`lock_timeout`](ResponseCacheLayerBuilder::lock_timeout),
//!   5 s by default) and are answered from the stored entry
//!   (`Cache-Status: ...; collapsed`).
//! * **Stale** (RFC 5861): within `stale-while-revalidate` the stale entry
//!   is served and one request refreshes it in the background; within
//!   `stale-if-error` it is served when the handler answers 500, 502, 503
//!   or 504, fails, or takes longer than
//!   [`origin_timeout`](ResponseCacheLayerBuilder::origin_timeout).
//!   `must-revalidate` and `proxy-revalidate` forbid both.
//! * **Conditional requests** on a hit answer 304 from the stored `ETag`
//!   and `Last-Modified` (RFC 9110 §13.2.2), without the handler and
//!   without hashing the body: an entry without an `ETag` gets the same
//!   xxh3 tag the cache-headers layer would make, once, when stored.
//! * **`Cache-Status`** (RFC 9211) on every response through the layer,
//!   but gRPC ones: `tower-edge; hit; ttl=25`, `tower-edge; fwd=uri-miss;
//!   fwd-status=200; stored`, `fwd=vary-miss`, `fwd=miss` (an entry this
//!   request may not use), `fwd=stale`, `fwd=bypass`, `fwd=method`; `Age`
//!   on answers from the cache.
//! * **Invalidation**: a non-error response to an unsafe method removes
//!   the entries of its URI and of its `Location` / `Content-Location`
//!   paths (RFC 9111 §4.4) and the groups its `Cache-Group-Invalidation`
//!   names (RFC 9875 §3); a stored response's `Cache-Groups` puts it in
//!   groups. [`ResponseCacheHandle`] purges by group or path in code.
//! * **Bounded**: each entry by [`max_entry_bytes`](ResponseCacheLayerBuilder::max_entry_bytes)
//!   (a larger or unknown-length body streams through; a copy is kept
//!   only while it stays under the cap), the memory tier by
//!   [`max_memory_bytes`](ResponseCacheLayerBuilder::max_memory_bytes)
//!   (64 MiB by default; oldest entries evicted first).
//!
//! The handler's body is never held back: frames go to the client as the
//! handler sends them, a copy of each (a reference count, not a copy of
//! the bytes) is kept, and the entry is stored when the body ends.
//!
//! # Redis tier
//!
//! With feature `redis`, [`ResponseCacheLayerBuilder::redis`] puts a Redis
//! tier behind the memory tier, on the crate's shared
//! [`RedisBackend`](crate::redis::RedisBackend), so every replica shares
//! the entries:
//!
//! * a memory miss asks Redis (one Lua script) before the handler; an entry
//!   found there is served (`Cache-Status: tower-edge; hit; ttl=..;
//!   detail=redis`) and kept in memory;
//! * one fill per key across replicas: when Redis has nothing, the script
//!   takes a short lease (`SET NX PX`, 1 s, renewed by its holder while
//!   the fill runs); the replica holding it runs the handler, the others
//!   poll Redis every 25 ms for the entry (at most `lock_timeout`), and
//!   when the holder dies mid-fill its lease runs out within a second and
//!   the next one polling fills;
//! * entries expire in Redis after their lifetime plus stale windows; ages
//!   use Redis's clock (`TIME`), the same on every replica (each replica
//!   estimates it from a `TIME` reply at most a second old);
//! * invalidation reaches every replica: a purge (an unsafe method, a
//!   `Cache-Group-Invalidation`, [`ResponseCacheHandle`]) deletes the
//!   group's entries in Redis and publishes the group on a pub/sub channel
//!   every replica subscribes to, purging its memory tier. A replica that
//!   loses its subscription clears its memory tier when it resubscribes.
//!   Purges run in the background: a request to another replica right
//!   after the write may still see the old entry for a round trip.
//! * Redis unreachable: the request bypasses the cache (`fwd=bypass`, the
//!   handler answers, nothing stored), counted in
//!   [`CacheStats::redis_bypassed`]; never an error.
//!
//! All keys share one Cluster hash tag (`{rc}`), so the scripts run on
//! Redis Cluster, on one node; the purge subscription needs a single node
//! for now (with a Cluster, other replicas' memory entries live out their
//! lifetime).
//!
//! ```
//! # #[cfg(feature = "redis")] {
//! use tower_edge::redis::RedisBackend;
//! use tower_edge::response_cache::ResponseCacheLayer;
//!
//! # fn main() -> Result<(), tower_edge::ConfigError> {
//! let backend = RedisBackend::builder("redis://127.0.0.1:6379").build()?; // does not connect yet
//! let layer = ResponseCacheLayer::builder()
//!     .redis(backend)
//!     .redis_key_prefix("my-api:cache")
//!     .build()?;
//! # let _ = layer; Ok(()) }
//! # main().unwrap(); }
//! ```
//!
//! # Cache-aside
//!
//! [`ResponseCacheLayer::cache_aside`] gives handlers a typed
//! [`CacheAside`] on the same engine: `get_or_load(key, ttl, loader)` runs
//! one load per key in the process, keeps serde values in the memory tier
//! (bounded with the responses), caches `None` only when asked
//! (`get_or_load_optional`), and forgets by key or group (a response's
//! `Cache-Group-Invalidation` reaches its groups too), on every replica
//! when the layer has a Redis tier. Values stay in the process unless
//! [`CacheAside::across_replicas`] keeps them in the Redis tier too, with
//! one load per key across replicas.
//!
//! # Metrics
//!
//! Every answer from the cache carries the crate's
//! [`Decision`](crate::decision::Decision) marker (layer `response_cache`,
//! reason `cache_hit`, `cache_stale`, `cache_collapsed` or `not_modified`);
//! [`ResponseCacheHandle::stats`] counts hits, misses, stale answers,
//! collapsed requests, stores, evictions, invalidations and the bytes held.
//!
//! The service needs the inner service to be `Clone + Send + 'static` (a
//! refresh runs it in the background, a waiting request keeps a ready
//! clone) and a tokio runtime.
//!
//! # Default setup
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::Full;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_edge::response_cache::ResponseCacheLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let calls = Arc::new(AtomicUsize::new(0));
//! let counted = Arc::clone(&calls);
//! let mut service = ServiceBuilder::new()
//!     .layer(ResponseCacheLayer::new())
//!     .service_fn(move |_req: Request<Full<Bytes>>| {
//!         counted.fetch_add(1, Ordering::SeqCst);
//!         async {
//!             let response = Response::builder()
//!                 .header("cache-control", "public, max-age=60")
//!                 .body(Full::from("[]"))
//!                 .unwrap();
//!             Ok::<_, Infallible>(response)
//!         }
//!     });
//!
//! for _ in 0..3 {
//!     let request = Request::get("/products").body(Full::default()).unwrap();
//!     let response = service.ready().await.unwrap().call(request).await.unwrap();
//!     // Read the body: the copy is stored when it ends.
//!     let _ = http_body_util::BodyExt::collect(response.into_body()).await;
//! }
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//! # }
//! ```
//!
//! # Customised
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_edge::response_cache::{QueryKey, ResponseCacheLayer, ResponseCacheRule};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = ResponseCacheLayer::builder()
//!     .rule(ResponseCacheRule::new().path_prefix("/admin").bypass())
//!     .rule(ResponseCacheRule::new().path("/me").per_subject().lifetime(Duration::from_secs(10)))
//!     .query(QueryKey::Exact)
//!     .max_entry_bytes(256 * 1024)
//!     .max_memory_bytes(16 * 1024 * 1024)
//!     .origin_timeout(Duration::from_secs(2))
//!     .build()
//!     .expect("valid configuration");
//! let purge = layer.handle();
//!
//! let mut service = ServiceBuilder::new().layer(layer).service_fn(|_req: Request<Full<Bytes>>| async {
//!     let response = Response::builder()
//!         // Browsers: 5 s; this cache: 30 s, in the groups below.
//!         .header("cache-control", "public, max-age=5")
//!         .header("edge-cache-control", "max-age=30")
//!         .header("cache-groups", "\"products\", \"product-7\"")
//!         .body(Full::from("{\"id\":7}"))
//!         .unwrap();
//!     Ok::<_, std::convert::Infallible>(response)
//! });
//!
//! let request = Request::get("/products/7").body(Full::default()).unwrap();
//! let response = service.ready().await.unwrap().call(request).await.unwrap();
//! assert!(response.headers().get("edge-cache-control").is_none());
//! let _ = response.into_body().collect().await;
//!
//! let request = Request::get("/products/7").body(Full::default()).unwrap();
//! let response = service.ready().await.unwrap().call(request).await.unwrap();
//! let status = response.headers()["cache-status"].to_str().unwrap();
//! assert!(status.starts_with("tower-edge; hit; ttl="), "{status}"); // 30 s, or 29 and a bit
//!
//! assert_eq!(purge.purge_group("product-7"), 1);
//! # }
//! ```

mod aside;
#[cfg(feature = "redis")]
mod aside_remote;
mod body;
mod builder;
#[cfg(feature = "redis")]
mod codec;
mod directives;
mod engine;
mod entry;
mod flight;
mod future;
mod groups;
mod handle;
mod head;
mod key;
mod lookup;
mod memory;
#[cfg(feature = "otel")]
mod metrics;
#[cfg(feature = "redis")]
mod remote;
#[cfg(feature = "redis")]
mod remote_clock;
mod remote_fill;
#[cfg(feature = "redis")]
mod remote_step;
mod respond;
mod rule;
mod service;
mod status;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use tower_layer::Layer;

pub use aside::CacheAside;
pub use body::CacheBody;
pub use builder::ResponseCacheLayerBuilder;
pub use engine::CacheStats;
pub use future::ResponseFuture;
pub use groups::{CACHE_GROUP_INVALIDATION, CACHE_GROUPS};
pub use handle::ResponseCacheHandle;
pub use key::QueryKey;
#[cfg(feature = "otel")]
pub use metrics::RESPONSE_CACHE_RESULT;
pub use rule::ResponseCacheRule;
pub use service::ResponseCache;
pub use status::CACHE_STATUS;

use engine::Engine;

/// The cap on one stored body by default: 1 MiB.
pub const DEFAULT_MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// The cap on the memory tier by default: 64 MiB.
pub const DEFAULT_MAX_MEMORY_BYTES: usize = 64 * 1024 * 1024;
/// How long a request waits for another's fill of its key by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// The cache's name in `Cache-Status` by default (RFC 9211 §2).
pub const DEFAULT_NAME: &str = "tower-edge";
/// The targeted cache-control field (RFC 9213) this cache reads by
/// default: `Edge-Cache-Control`.
pub const TARGETED_FIELD: HeaderName = HeaderName::from_static("edge-cache-control");

/// The verdict, `Vary` and `Cache-Groups` handling of one response (the
/// fuzz target's entry point, see `crate::__fuzz`).
#[cfg(fuzzing)]
pub(crate) fn __fuzz_verdict(
    status: u16,
    headers: &http::HeaderMap,
    authorized: bool,
) -> Option<(u64, bool)> {
    let status = http::StatusCode::from_u16(status).ok()?;
    let verdict = directives::verdict(status, headers, &TARGETED_FIELD, None, authorized).ok()?;
    key::vary_names(headers)?;
    let _ = groups::parse(headers, &CACHE_GROUPS);
    Some((
        verdict.lifetime.as_secs(),
        verdict.shareable_with_authorization,
    ))
}

/// The configuration shared by a layer's services.
#[derive(Debug)]
pub(crate) struct Config {
    pub(crate) engine: Arc<Engine>,
    pub(crate) rules: Vec<ResponseCacheRule>,
    pub(crate) query: QueryKey,
    pub(crate) targeted: HeaderName,
    pub(crate) max_entry_bytes: usize,
    pub(crate) lock_timeout: Duration,
    pub(crate) origin_timeout: Option<Duration>,
    pub(crate) name: Box<str>,
    pub(crate) make_etag: bool,
}

/// Layer that applies [`ResponseCache`]; see the [module docs](self).
///
/// Cheap to clone: clones (and every service they make) share one cache.
#[derive(Debug, Clone)]
pub struct ResponseCacheLayer {
    config: Arc<Config>,
}

impl Default for ResponseCacheLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseCacheLayer {
    /// The default cache: no rules, sorted queries, 1 MiB per entry,
    /// 64 MiB in memory, a 5 s wait for another request's fill.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder to customise the cache.
    pub fn builder() -> ResponseCacheLayerBuilder {
        ResponseCacheLayerBuilder::new()
    }

    /// A handle on this cache: purges and counters.
    pub fn handle(&self) -> ResponseCacheHandle {
        ResponseCacheHandle::new(Arc::clone(&self.config))
    }

    /// A typed cache-aside handle for handlers, on this cache's engine
    /// (its memory tier, one load per key, purges by group).
    pub fn cache_aside(&self) -> CacheAside {
        CacheAside::new(Arc::clone(&self.config))
    }
}

impl<S> Layer<S> for ResponseCacheLayer {
    type Service = ResponseCache<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ResponseCache {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}
