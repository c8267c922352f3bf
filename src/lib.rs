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
//! | cache headers | [`cache_headers`] | `cache-headers` | `Cache-Control` policies, ETags, RFC 9110 conditional requests (304 / 412) |
//! | correlation IDs | [`correlation`] | `correlation-id` | validated request/correlation IDs, echoed, on every log line |
//! | OpenTelemetry | [`otel`] | `otel` | W3C trace-context propagation, HTTP/gRPC server spans and metrics per semantic conventions |
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
//! correlation -> otel -> rate_limit(by IP) -> jwt_auth -> rate_limit(by user) -> cache_headers -> handler
//! ```
//!
//! * **correlation** first, so every response — rejections included —
//!   carries the ID, and every log line inside has it.
//! * **otel** next, so the server span covers the work of all other layers.
//! * a coarse **per-IP flood guard** before signature checks, so floods of
//!   bad tokens cost little; its quota sits well above any per-client quota.
//! * **jwt_auth** puts the verified claims in the request extensions; the
//!   **per-client limiter** after it keys by subject for authenticated
//!   requests and by IP for anonymous ones.
//! * **cache_headers** innermost: it sees the handler's real response and
//!   never turns a 401 or 429 into a 304.
//!
//! ## Example
//!
//! ```
//! # #[cfg(feature = "correlation-id")] {
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_edge::ServiceBuilderExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let service = ServiceBuilder::new()
//!     .correlation_id()
//!     .service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!     });
//! let response = service.oneshot(Request::new(String::new())).await.unwrap();
//! assert!(response.headers().contains_key("x-request-id"));
//! # }
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

pub mod body;
pub mod config;
pub mod rejection;
mod subject;

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

#[cfg(feature = "otel")]
#[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
pub mod otel;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub mod rate_limit;

mod builder;

pub use body::ResponseBody;
pub use builder::ServiceBuilderExt;
pub use config::ConfigError;
pub use subject::Subject;
