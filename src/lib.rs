//! # tower-edge
//!
//! Composable [`tower`] layers that give any tower-compatible server (axum,
//! hyper, tonic) what an API needs before it can scale horizontally:
//! stateless authentication, fair rate limiting shared across replicas, HTTP
//! caching and traceable requests.
//!
//! | layer | module | feature | what it does |
//! |---|---|---|---|
//! | JWT auth | [`jwt_auth`] | `jwt-auth` | bearer-token authentication and scope checks; claims land in request extensions |
//! | JWKS | `jwt_auth::jwks` | `jwks` | remote key sets (and OpenID discovery) with rotation, background refresh, single-flight refetch |
//! | rate limiting | [`rate_limit`] | `rate-limit` | GCRA quotas keyed by client IP, user, API key or route; IETF `RateLimit` headers |
//! | distributed store | `rate_limit::redis` | `redis` | the same GCRA, atomic in Redis (single node or Cluster), so N replicas share one quota |
//! | Redis backend | `redis` | `redis` | one Redis connection (single node or Cluster) shared by every Redis-backed store: timeout, circuit breaker, scripts |
//! | cache headers | [`cache_headers`] | `cache-headers` | `Cache-Control` policies, ETags, RFC 9110 conditional requests (304 / 412) |
//! | response cache | `response_cache` | `response-cache` | RFC 9111 shared cache in memory and Redis: one fill per key across replicas, stale serving, `Cache-Status`, purge by group; cache-aside for handlers |
//! | correlation IDs | [`correlation`] | `correlation-id` | validated request/correlation IDs, echoed, on every log line |
//! | OpenTelemetry | [`otel`] | `otel` | W3C trace-context propagation, HTTP/gRPC server spans and metrics per semantic conventions |
//! | overload protection | `overload` | `overload` | in-flight limits (global, per key, partitions with guaranteed shares), adaptive limit (Gradient2, AIMD), immediate 503 / 429 shedding |
//! | idempotency keys | [`idempotency`] | `idempotency` | retried unsafe requests (HTTP and gRPC unary) run once; outcomes replayed; keys scoped by principal; memory or Redis |
//!
//! Every layer answers a rejected request with a response, never a service
//! error, built in one place ([`rejection`]): RFC 9457 problem+json for HTTP
//! clients, trailers-only `grpc-status` for gRPC clients.
//!
//! ## Recommended order
//!
//! Outermost first:
//!
//! ```text
//! correlation -> otel -> overload (global) -> rate_limit(by IP) -> jwt_auth
//!   -> rate_limit(by user) -> overload (per client) -> idempotency
//!   -> response_cache -> cache_headers -> handler
//! ```
//!
//! * **correlation** first, so every response — rejections included —
//!   carries the ID, and every log line inside has it.
//! * **otel** next, so the server span covers the work of all other layers.
//! * **global overload shedding** right after otel (shed requests are
//!   still traced and counted), before any crypto or Redis work: a shed
//!   request must cost next to nothing.
//! * a coarse **per-IP flood guard** before signature checks, so floods of
//!   bad tokens cost little; its quota sits well above any per-client quota.
//! * **jwt_auth** puts the verified claims in the request extensions; the
//!   **per-client limiter** after it keys by subject for authenticated
//!   requests and by IP for anonymous ones.
//! * the **per-client in-flight limit** (`overload` with a per-key limit)
//!   after authentication, keyed by subject (by IP when anonymous).
//! * **idempotency** after authentication, so keys are scoped by subject,
//!   and after the limiters, so a retry storm is still limited.
//! * **cache_headers** innermost: it sees the handler's real response and
//!   never turns a 401 or 429 into a 304.
//! * **response_cache** right outside it: it stores what `cache_headers`
//!   made of the handler's answer (its `Cache-Control` and `ETag`), so a
//!   hit answers 304 from the stored validators without running the
//!   handler or hashing the body again; it sits after authentication and
//!   the limits, so it never stores or serves a 401, 403 or 429.
//!
//! ## Example: the default layers in the recommended order
//!
//! ```
//! # #[cfg(all(feature = "jwt-auth", feature = "rate-limit", feature = "cache-headers", feature = "correlation-id"))] {
//! use std::net::SocketAddr;
//! use std::time::Duration;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_edge::cache_headers::{CacheControl, CacheHeadersLayer, CacheRule};
//! use tower_edge::correlation::CorrelationIdLayer;
//! use tower_edge::jwt_auth::{Algorithm, AuthMode, JwtAuthLayer, VerificationKey};
//! use tower_edge::rate_limit::{ClientIp, PeerAddr, Policy, Quota, LimitRateLayer, SubjectOrIp};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let secret = b"a-development-secret-of-32-bytes!";
//! let stack = ServiceBuilder::new()
//!     .layer(CorrelationIdLayer::new())
//!     // A coarse flood guard per IP, well above any client's quota.
//!     .layer(LimitRateLayer::builder()
//!         .policy(Policy::new("ip", "6000/min burst 600".parse()?).key(ClientIp))
//!         .build()?)
//!     .layer(JwtAuthLayer::builder()
//!         .key(VerificationKey::hmac(Algorithm::HS256, secret)?)
//!         .issuer("https://idp.example.com/")
//!         .audience("my-api")
//!         .mode(AuthMode::Optional) // public routes stay public
//!         .build()?)
//!     // Each client's quota: by subject with a token, by IP without.
//!     .layer(LimitRateLayer::builder()
//!         .policy(Policy::new("client", Quota::per_minute(600).with_burst(60)).key(SubjectOrIp))
//!         .build()?)
//!     .layer(CacheHeadersLayer::builder()
//!         .rule(CacheRule::new(CacheControl::new().public().max_age(Duration::from_secs(60)))
//!             .path_prefix("/products"))
//!         .build()?);
//!
//! let service = stack.service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"[]"))))
//! });
//!
//! let mut request = Request::get("/products").body(Full::default())?;
//! // Servers insert the TCP peer (axum: `ConnectInfo`, see `rate_limit`).
//! request.extensions_mut().insert(PeerAddr(SocketAddr::from(([192, 0, 2, 7], 50000))));
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert!(response.headers().contains_key("x-request-id"));
//! assert!(response.headers().contains_key("etag"));
//! assert_eq!(response.headers()["cache-control"], "public, max-age=60");
//! assert_eq!(response.headers().get_all("ratelimit-policy").iter().count(), 2);
//! # Ok(()) }
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms,
    clippy::all
)]

#[cfg(feature = "correlation-id")]
#[cfg_attr(docsrs, doc(cfg(feature = "correlation-id")))]
pub mod access_log;
pub mod body;
#[cfg(any(feature = "correlation-id", feature = "overload"))]
mod body_end;
pub mod config;
pub mod decision;
#[cfg(any(feature = "idempotency", feature = "response-cache"))]
mod header_map;
#[cfg(any(feature = "cache-headers", feature = "idempotency"))]
mod hex;
pub(crate) mod principal;
pub mod rejection;

#[cfg(feature = "cache-headers")]
#[cfg_attr(docsrs, doc(cfg(feature = "cache-headers")))]
pub mod cache_headers;

#[cfg(feature = "correlation-id")]
#[cfg_attr(docsrs, doc(cfg(feature = "correlation-id")))]
pub mod correlation;

#[cfg(feature = "jwt-auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt-auth")))]
pub mod jwt_auth;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod extract;

#[cfg(feature = "idempotency")]
#[cfg_attr(docsrs, doc(cfg(feature = "idempotency")))]
pub mod idempotency;

#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
#[cfg(feature = "overload")]
#[cfg_attr(docsrs, doc(cfg(feature = "overload")))]
pub mod overload;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub mod rate_limit;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "response-cache")]
#[cfg_attr(docsrs, doc(cfg(feature = "response-cache")))]
pub mod response_cache;

mod builder;
#[cfg(any(
    feature = "jwt-auth",
    feature = "cache-headers",
    feature = "rate-limit"
))]
mod cache_control;
#[cfg(any(
    feature = "jwt-auth",
    feature = "cache-headers",
    feature = "rate-limit",
    feature = "otel"
))]
mod list;
#[cfg(any(
    feature = "jwt-auth",
    feature = "rate-limit",
    feature = "redis",
    feature = "response-cache"
))]
mod sync;
// The bounded TTL map of the in-memory caches (JWT tokens, JWKS unknown
// kids, the Redis deny cache); widen the `cfg` when another layer uses it.
#[cfg(any(feature = "jwt-auth", feature = "redis"))]
mod ttl_map;

/// Entry points for the fuzz targets of `fuzz/` into crate-private kits;
/// built only under `cfg(fuzzing)` (set by cargo-fuzz), never part of the
/// API.
#[cfg(all(fuzzing, feature = "cache-headers"))]
#[doc(hidden)]
pub mod __fuzz {
    /// The members of `lines` left to right, then right to left
    /// (RFC 9110 §5.6.1 list; quoted-strings per §5.6.4 when `quoted`).
    pub fn list_members<'a>(lines: &[&'a [u8]], quoted: bool) -> (Vec<&'a [u8]>, Vec<&'a [u8]>) {
        let quoting = if quoted {
            crate::list::Quoting::Rfc9110
        } else {
            crate::list::Quoting::None
        };
        (
            crate::list::members(lines.iter().copied(), quoting).collect(),
            crate::list::members_rev(lines.iter().copied(), quoting).collect(),
        )
    }

    /// What the response cache decides for a response with these fields
    /// (`authorized`: the request carried `Authorization`): `Some((freshness
    /// lifetime in seconds, may serve requests with Authorization))` when
    /// it stores it, with its `Vary` names and `Cache-Groups` read too.
    #[cfg(feature = "response-cache")]
    pub fn response_cache_verdict(
        status: u16,
        headers: &http::HeaderMap,
        authorized: bool,
    ) -> Option<(u64, bool)> {
        crate::response_cache::__fuzz_verdict(status, headers, authorized)
    }
}

pub use body::ResponseBody;
pub use builder::ServiceBuilderExt;
pub use config::ConfigError;
pub use principal::Subject;
