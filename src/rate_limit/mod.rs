//! GCRA rate limiting keyed by client IP, user, API key or route, with the
//! IETF `RateLimit` headers.
//!
//! [`LimitRateLayer`] checks each request against one or more [`Policy`]s
//! (a name, a [`Quota`], a [`KeyExtractor`] and a store, by default a
//! [`MemoryStore`]):
//!
//! * allowed requests go through and their response carries
//!   `RateLimit-Policy: "name";q=100;w=60` and `RateLimit: "name";r=42;t=17`
//!   (draft-ietf-httpapi-ratelimit-headers-11, as RFC 9651 Structured
//!   Fields, in the response head, never in trailers); when a shared cache
//!   may store that response (`public`, `s-maxage`, `max-age` or
//!   `Expires`), `Cache-Control: private="RateLimit"` is added so shared
//!   caches never store one client's quota for everyone (RFC 9111
//!   §5.2.2.7; the legacy `X-RateLimit-Remaining` / `-Reset` likewise).
//!   Stack the limiter outside the layer that sets `Cache-Control`, as the
//!   recommended order does, so it sees the final value;
//! * limited requests are answered (never a service error) through
//!   [`crate::rejection`]: HTTP `429` problem+json with
//!   `Retry-After: <seconds, rounded up>`, `Cache-Control: no-store` and
//!   the same `RateLimit` headers; gRPC requests get HTTP 200 with
//!   `grpc-status: 8` (`RESOURCE_EXHAUSTED`).
//!
//! # The algorithm
//!
//! GCRA, per key: with `T = period / count` and `τ = T · (burst − 1)`, a
//! request is denied when `now < TAT − τ`; an allowed one sets
//! `TAT = max(TAT, now) + T` (a request of cost `n` adds `n·T`). See
//! [`store::gcra`] for the exact formulas of the decision, `r` (remaining), `t`
//! (seconds until the bucket is full) and `Retry-After`.
//!
//! **Why our own GCRA and not `governor`.** governor's keyed limiter answers
//! allowed/denied and the earliest retry time, but not the state the
//! `RateLimit` header needs (`t` requires the TAT; its snapshot exposes only
//! the remaining burst), it offers no hard cap on keys, and its clock is not
//! tokio's paused time. The arithmetic is a dozen integer operations
//! ([`store::gcra`]), shared verbatim with any other store (a Redis Lua script
//! returns the same four numbers), so the memory store implements it on a
//! sharded map instead: one hash, one uncontended lock, no allocation.
//!
//! # Keys and the client IP
//!
//! The default key is the client IP ([`ClientIp`]). The TCP peer address is
//! read from the request extensions: [`PeerAddr`] first, then the
//! [`peer_addr_with`](LimitRateLayerBuilder::peer_addr_with) hook, a bare
//! [`std::net::SocketAddr`], and axum's `ConnectInfo<SocketAddr>` (feature
//! `axum`; serve with `into_make_service_with_connect_info`). tonic users add
//! `.peer_addr_with(|ext| ext.get::<TcpConnectInfo>()?.remote_addr().map(|a| a.ip()))`.
//!
//! Behind proxies, list them with
//! [`trusted_proxies`](LimitRateLayerBuilder::trusted_proxies): when the
//! peer is trusted, every `X-Forwarded-For` line (or RFC 7239 `Forwarded`,
//! see [`ForwardedHeader`]) is walked right to left, trusted addresses are
//! skipped, and the first untrusted valid address is the client — never the
//! client-written leftmost entry. An untrusted peer is the client and its
//! forwarding headers are ignored. An entry that is not an address
//! (`unknown`, an obfuscated `_id`, garbage, a malformed `Forwarded`
//! element) ends the walk at the last trusted hop. Lines are split from the
//! right, so what the client wrote on a line never changes how the entries a
//! proxy appended to it are read. IPv6 clients are keyed by their /64 (see
//! [`ipv6_prefix`](LimitRateLayerBuilder::ipv6_prefix)).
//!
//! Other keys: [`SubjectOrIp`] (the authenticated [`Subject`](crate::Subject),
//! else the IP: a user behind an exhausted anonymous IP bucket keeps their
//! own quota), [`SubjectOnly`], [`HeaderKey`] (an API key), [`MethodAndPath`],
//! [`Global`], pairs `(A, B)` for composites, and any closure
//! `Fn(&RequestInfo<'_>) -> Option<Key>`.
//!
//! A request whose key cannot be found (no peer address, no header...) is
//! never answered with a 500: by default it is counted in one shared
//! "unknown" bucket of that policy, and the first occurrence is logged at
//! WARN (later ones at DEBUG); [`UnknownKey::Skip`] lets it through that
//! policy instead.
//!
//! # Several policies
//!
//! Policies are checked in order and checking stops at the first denial (so
//! a denied request does not consume later policies' quotas; put the one
//! most often exhausted first). The denial decides the response; on allowed
//! responses the `RateLimit` header lists every policy checked. Paths can
//! have their own policies ([`route`](LimitRateLayerBuilder::route), longest
//! prefix wins, replacing the defaults) and requests can be exempted
//! ([`exempt`](LimitRateLayerBuilder::exempt)).
//!
//! # State and memory
//!
//! Each policy has its own store; by default a [`MemoryStore`], shared by
//! every clone of the service (one `Arc`), bounded by a hard cap on keys with
//! amortised cleanup on the request path and no background task (no tokio
//! runtime needed). [`LimitRateLayer::tracked_keys`] reports its size.
//! A policy can use another store instead: [`redis::RedisStore`] (feature
//! `redis`), or your own.
//!
//! # Writing a store
//!
//! What a store implements and uses lives in [`store`], apart from what
//! users configure here: the [`store::RateLimitStore`] trait, the
//! [`store::Check`] it answers with a [`store::Decision`] (or a
//! [`store::StoreError`]) through a [`store::StoreFuture`], the
//! [`store::Clock`] of time, and the GCRA arithmetic ([`store::gcra`]).
//!
//! # Default setup
//!
//! ```
//! use std::net::SocketAddr;
//! use http::{Request, Response, StatusCode};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_edge::rate_limit::{PeerAddr, Quota, LimitRateLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut service = ServiceBuilder::new()
//!     .layer(LimitRateLayer::new(Quota::per_minute(2)))
//!     .service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!     });
//!
//! let request = || {
//!     let mut req = Request::new(String::new());
//!     let peer: SocketAddr = "192.0.2.1:5000".parse().unwrap();
//!     req.extensions_mut().insert(PeerAddr(peer)); // your server does this
//!     req
//! };
//! let res = service.ready().await.unwrap().call(request()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["ratelimit-policy"], r#""default";q=2;w=60"#);
//! assert_eq!(res.headers()["ratelimit"], r#""default";r=1;t=30"#);
//! service.ready().await.unwrap().call(request()).await.unwrap();
//! let res = service.ready().await.unwrap().call(request()).await.unwrap();
//! assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(res.headers()["retry-after"], "30");
//! # }
//! ```
//!
//! # Customised
//!
//! A per-IP flood guard and a per-user hourly quota behind a load balancer,
//! a tighter login route, health checks exempt, legacy headers too:
//!
//! ```
//! use http::{Request, Response};
//! use tower::ServiceBuilder;
//! use tower_edge::rate_limit::{
//!     ClientIp, HeaderStyle, Policy, Quota, LimitRateLayer, SubjectOrIp,
//! };
//!
//! let layer = LimitRateLayer::builder()
//!     .policy(Policy::new("burst", "10/s burst 20".parse().unwrap()).key(ClientIp))
//!     .policy(Policy::new("hourly", Quota::per_hour(1000)).key(SubjectOrIp))
//!     .route("/login", Policy::new("login", Quota::per_minute(5)))
//!     .exempt(|req| req.uri().path() == "/healthz")
//!     .trusted_proxies(["10.0.0.0/8", "fd00::/8"])
//!     .headers(HeaderStyle::Both)
//!     .max_keys(50_000)
//!     .build()
//!     .expect("valid configuration");
//! assert_eq!(layer.tracked_keys("burst"), Some(0));
//!
//! let service = ServiceBuilder::new().layer(layer).service_fn(|_req: Request<String>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//! });
//! # let _ = service;
//! ```

pub(crate) mod client_ip;
mod key;
mod layer_builder;
mod memory;
mod policy;
mod quota;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod service;
pub mod store;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::HeaderValue;
use tower_layer::Layer;

pub use client_ip::{ForwardedHeader, PeerAddr};
pub use key::{
    ClientIp, Global, HeaderKey, Key, KeyExtractor, MethodAndPath, RequestInfo, SubjectOnly,
    SubjectOrIp,
};
pub use layer_builder::LimitRateLayerBuilder;
pub use memory::{DEFAULT_MAX_KEYS, DEFAULT_SWEEP_INTERVAL, MemoryStore, MemoryStoreBuilder};
use policy::CostFn;
pub use policy::Policy;
pub use quota::{Quota, QuotaParseError};
pub use service::{LimitRate, ResponseFuture};
use store::{Clock, MonotonicClock, RateLimitStore, StoreError};

use crate::ConfigError;
use crate::rejection::Rejections;
use client_ip::ClientIpConfig;

/// Which rate-limit headers responses carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-11),
    /// the default.
    #[default]
    Ietf,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`
    /// (seconds) of the tightest policy.
    Legacy,
    /// Both.
    Both,
    /// No rate-limit headers (a 429 still carries `Retry-After`).
    Off,
}

impl HeaderStyle {
    fn ietf(self) -> bool {
        matches!(self, Self::Ietf | Self::Both)
    }

    fn legacy(self) -> bool {
        matches!(self, Self::Legacy | Self::Both)
    }
}

/// What happens to a request whose key a policy cannot find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum UnknownKey {
    /// Count it in the policy's one shared `unknown` bucket (the default):
    /// such requests stay limited, together.
    #[default]
    SharedBucket,
    /// Let it through this policy unchecked.
    Skip,
}

/// What happens when a store fails (a remote store's network error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Let the request through (fail open, the default); the error is
    /// logged and counted ([`LimitRateLayer::store_errors`]).
    #[default]
    Allow,
    /// Answer 503 (gRPC `UNAVAILABLE`) with `Retry-After: 1`.
    Reject,
}

type Predicate = dyn Fn(&RequestInfo<'_>) -> bool + Send + Sync;

/// A policy ready to use: pre-rendered header pieces, its store.
pub(crate) struct BuiltPolicy {
    name: Arc<str>,
    /// `"name";r=`: the constant start of this policy's `RateLimit` item
    /// (the name as an RFC 9651 string).
    ratelimit_prefix: Box<str>,
    quota: Quota,
    key: Arc<dyn KeyExtractor>,
    cost: Option<Arc<CostFn>>,
    store: Arc<dyn RateLimitStore>,
    legacy_limit: HeaderValue,
}

pub(crate) struct PolicySet {
    policies: Vec<BuiltPolicy>,
    /// `RateLimit-Policy`, pre-rendered (constant per set: cloning it is
    /// a reference count).
    policy_header: Option<HeaderValue>,
}

impl fmt::Debug for PolicySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.policies.iter().map(|p| (&*p.name, p.quota, &p.store)))
            .finish()
    }
}

pub(crate) struct Config {
    default: PolicySet,
    /// (path prefix, policies), longest prefix first.
    routes: Vec<(String, PolicySet)>,
    exempt: Option<Arc<Predicate>>,
    ip: ClientIpConfig,
    headers: HeaderStyle,
    unknown_key: UnknownKey,
    on_store_error: OnStoreError,
    rejections: Rejections,
    unknown_warned: AtomicBool,
    store_errors: AtomicU64,
    /// When a store failure was last logged at `warn` (milliseconds on
    /// `clock`, plus one; 0: never), and the failure count then.
    store_error_warned_at: AtomicU64,
    store_errors_at_warning: AtomicU64,
    clock: LayerClock,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitConfig")
            .field("policies", &self.default)
            .field("routes", &self.routes)
            .field("client_ip", &self.ip)
            .field("headers", &self.headers)
            .field("unknown_key", &self.unknown_key)
            .field("on_store_error", &self.on_store_error)
            .finish_non_exhaustive()
    }
}

/// Store failures are logged at `warn` at most once per this interval per
/// layer (with how many were logged at `debug` in between): a store that is
/// down fails every request, and a warning per request would flood the logs
/// exactly when they are needed.
const STORE_ERROR_WARN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

impl Config {
    /// Counts a store failure and logs it: at `warn` if none was in the last
    /// [`STORE_ERROR_WARN_INTERVAL`], else at `debug`.
    fn store_failed(&self, policy: &str, error: &StoreError) {
        let total = self.store_errors.fetch_add(1, Ordering::Relaxed) + 1;
        let interval = u64::try_from(STORE_ERROR_WARN_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        let now = u64::try_from(self.clock.now().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.store_error_warned_at.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= interval;
        if due
            && self
                .store_error_warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let before = self.store_errors_at_warning.swap(total, Ordering::Relaxed);
            let since = total.saturating_sub(before).saturating_sub(1);
            // Debug of the text (escaped): a store's message may repeat the
            // key, which comes from the request (a subject, a header).
            tracing::warn!(
                policy,
                error = ?error.to_string(),
                failures_since_last_warning = since,
                total_failures = total,
                "rate-limit store failed (further failures within {} s are logged at debug level)",
                STORE_ERROR_WARN_INTERVAL.as_secs()
            );
        } else {
            tracing::debug!(policy, error = ?error.to_string(), "rate-limit store failed");
        }
    }

    /// The index of the route policy set for `uri`, `None` for the default
    /// set (checked inline: most layers have no routes).
    #[inline]
    fn set_for(&self, uri: &http::Uri) -> Option<usize> {
        if self.routes.is_empty() {
            None
        } else {
            self.route_for(uri)
        }
    }

    fn route_for(&self, uri: &http::Uri) -> Option<usize> {
        let path = uri.path();
        self.routes.iter().position(|(prefix, _)| {
            path.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/')
            })
        })
    }

    #[inline]
    fn set(&self, index: Option<usize>) -> &PolicySet {
        index.map_or(&self.default, |i| &self.routes[i].1)
    }
}

/// The clock of a layer's default memory stores: the monotonic default,
/// or the one given to [`LimitRateLayerBuilder::clock`].
pub(crate) enum LayerClock {
    Monotonic(MonotonicClock),
    Custom(Arc<dyn Clock>),
}

impl Clock for LayerClock {
    #[inline]
    fn now(&self) -> std::time::Duration {
        match self {
            Self::Monotonic(clock) => clock.now(),
            Self::Custom(clock) => clock.now(),
        }
    }
}

/// Layer that applies [`LimitRate`]: GCRA quotas with `RateLimit` headers.
/// See the [module docs](self).
///
/// Cloning is cheap and clones share the state: every service made from it
/// counts against the same quotas.
#[derive(Clone, Debug)]
pub struct LimitRateLayer {
    config: Arc<Config>,
}

impl LimitRateLayer {
    /// How this limiter finds the client IP: the access log reports the
    /// address this limiter keyed the request by.
    #[cfg(feature = "correlation-id")]
    pub(crate) fn client_ip_config(&self) -> &client_ip::ClientIpConfig {
        &self.config.ip
    }
}

impl LimitRateLayer {
    /// One policy named `default`: `quota` per client IP (the TCP peer),
    /// in memory.
    ///
    /// # Panics
    ///
    /// When `quota` is invalid (zero count, burst or period, a period that
    /// is not whole seconds or is longer than a year, or a rate above one
    /// request per nanosecond);
    /// use [`builder`](Self::builder) to get an error instead.
    pub fn new(quota: Quota) -> Self {
        Self::builder()
            .policy(Policy::new("default", quota))
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A builder to customise the layer.
    pub fn builder() -> LimitRateLayerBuilder {
        LimitRateLayerBuilder {
            policies: Vec::new(),
            routes: Vec::new(),
            exempt: None,
            client_ip: client_ip::options::ClientIpOptions::default(),
            headers: HeaderStyle::default(),
            unknown_key: UnknownKey::default(),
            on_store_error: OnStoreError::default(),
            rejections: Rejections::default(),
            max_keys: DEFAULT_MAX_KEYS,
            clock: None,
        }
    }

    /// How many keys the store of policy `name` tracks (`None` for an
    /// unknown name or a store that does not know).
    pub fn tracked_keys(&self, name: &str) -> Option<usize> {
        let config = &self.config;
        std::iter::once(&config.default)
            .chain(config.routes.iter().map(|(_, set)| set))
            .flat_map(|set| &set.policies)
            .find(|p| &*p.name == name)
            .and_then(|p| p.store.len())
    }

    /// How many store failures happened (each let the request through or
    /// rejected it, per [`OnStoreError`]).
    pub fn store_errors(&self) -> u64 {
        self.config.store_errors.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for LimitRateLayer {
    type Service = LimitRate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LimitRate {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}
