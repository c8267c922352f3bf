//! Idempotency keys: a retried unsafe request runs once, on whichever
//! replica it lands, and the retry gets the first outcome
//! (draft-ietf-httpapi-idempotency-key-header-07).
//!
//! A client whose `POST /orders` times out retries it with the same
//! `Idempotency-Key`. The [`IdempotencyLayer`]:
//!
//! * **applies** to the configured methods (default `POST`, `PATCH`) and
//!   [routes](IdempotencyLayerBuilder::route); per route the key is
//!   required (missing → 400) or optional;
//! * **parses** the key as an RFC 9651 sf-string (a bare token value is
//!   accepted too), bounded in length; two field lines or a malformed value
//!   → 400 ([`IdempotencyKey::parse`]);
//! * **scopes** the key by principal ([`SubjectOrClientIp`]: the
//!   [`Subject`](crate::Subject) from the authentication layer, else the
//!   client IP, or a [`ScopeExtractor`] of yours): one client never
//!   receives another client's stored response;
//! * **fingerprints** the request ([`RequestFingerprint`]: method, path and
//!   query, chosen headers, body; or a [`Fingerprinter`] of yours), with the
//!   body buffered up to a cap (1 MiB; over it → 413);
//! * **claims** the key atomically in its [store](IdempotencyStore): a lease
//!   with an expiry and a [`FencingToken`]. A duplicate while the first
//!   runs gets 409 with `Retry-After` ([`InFlight::Conflict`]) or waits up
//!   to a deadline and gets the replay ([`InFlight::Wait`]); the same key
//!   with another fingerprint gets 422; a completed key replays the stored
//!   status, allowlisted headers (never `Set-Cookie`) and body byte for
//!   byte, with `Idempotent-Replayed: true`. The fingerprint is checked by
//!   the store before anything is replayed or stored, on every path;
//! * **stores** the outcomes of [`StoredOutcomes`] (2xx and 4xx but 408,
//!   409, 425, 429); a 5xx, a handler error, a failing response body or a
//!   dropped request releases the key, so the retry runs again. A lease
//!   that expires (the replica died mid-request) frees the key; the fencing
//!   token refuses the late completion of the old holder.
//!
//! Every answer of the layer is problem+json (RFC 9457) for HTTP clients
//! and trailers-only for gRPC clients, whose key is the `idempotency-key`
//! metadata: missing or bad key → 3 `INVALID_ARGUMENT`, in flight → 10
//! `ABORTED`, another payload → 9 `FAILED_PRECONDITION`, body over the cap
//! → 8 `RESOURCE_EXHAUSTED`, store down and failing closed → 14
//! `UNAVAILABLE`; a gRPC replay is the stored message and trailers. Every
//! answer carries a [`Decision`](crate::decision::Decision)
//! (`idempotency`, with `replayed`, `request_in_flight`, `key_reused`...);
//! a handler's response after a lease takeover or a store error let
//! through carries an observed one (`lease_expired`, `store_unavailable`).
//!
//! Put the layer after authentication (so keys are scoped by subject) and
//! after the rate limiters (so a retry storm is still limited).
//!
//! # Default setup
//!
//! ```
//! use std::convert::Infallible;
//! use std::net::SocketAddr;
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::{BodyExt, Full};
//! use tower::{Layer, Service, ServiceExt};
//! use tower_edge::idempotency::{IdempotencyLayer, RequestBody};
//! use tower_edge::rate_limit::PeerAddr;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let runs = Arc::new(AtomicUsize::new(0));
//! let counter = Arc::clone(&runs);
//! let handler = tower::service_fn(move |_req: Request<RequestBody<Full<Bytes>>>| {
//!     let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
//!     async move {
//!         let mut response = Response::new(Full::new(Bytes::from(format!("order {n}"))));
//!         *response.status_mut() = StatusCode::CREATED;
//!         Ok::<_, Infallible>(response)
//!     }
//! });
//! // POST and PATCH, key optional, a memory store of its own.
//! let mut service = IdempotencyLayer::new().layer(handler);
//!
//! let post = || {
//!     let mut request = Request::post("/orders")
//!         .header("idempotency-key", "\"8e03978e-40d5-43e8-bc93-6894a57f9324\"")
//!         .body(Full::new(Bytes::from_static(b"{\"product_id\":1}")))
//!         .unwrap();
//!     request.extensions_mut().insert(PeerAddr(SocketAddr::from(([192, 0, 2, 7], 5000))));
//!     request
//! };
//! let first = service.ready().await?.call(post()).await?;
//! let retry = service.ready().await?.call(post()).await?;
//! assert_eq!(runs.load(Ordering::SeqCst), 1);
//! assert_eq!(retry.status(), StatusCode::CREATED);
//! assert_eq!(retry.headers()["idempotent-replayed"], "true");
//! assert_eq!(first.into_body().collect().await?.to_bytes(), "order 1");
//! assert_eq!(retry.into_body().collect().await?.to_bytes(), "order 1");
//! # Ok(()) }
//! ```
//!
//! # Customised
//!
//! Keys required on `/orders`, optional on `/notes`; a duplicate waits up
//! to 5 s for the first request; 128 KiB bodies; a bounded memory store
//! (use `RedisStore`, feature `redis`, across replicas); 503 when the
//! store fails.
//!
//! ```
//! use std::time::Duration;
//!
//! use http::header::CONTENT_TYPE;
//! use tower_edge::idempotency::{
//!     IdempotencyLayer, InFlight, MemoryStore, OnStoreError, RequestFingerprint, Route,
//! };
//!
//! # fn main() -> Result<(), tower_edge::ConfigError> {
//! let layer = IdempotencyLayer::builder()
//!     .route(Route::prefix("/orders"))
//!     .route(Route::exact("/notes").key_optional())
//!     .in_flight(InFlight::Wait(Duration::from_secs(5)))
//!     .max_body_bytes(128 * 1024)
//!     .fingerprint(RequestFingerprint::new().header(CONTENT_TYPE))
//!     .store(MemoryStore::builder().max_keys(10_000).max_bytes(64 << 20).build()?)
//!     .on_store_error(OnStoreError::Reject)
//!     .trusted_proxies(["10.0.0.0/8"])
//!     .build()?;
//! # let _ = layer; Ok(()) }
//! ```

mod body;
mod builder;
mod fingerprint;
mod flow;
mod key;
mod memory;
mod outcome;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
mod route;
mod scope;
mod service;
mod state;
mod store;
#[cfg(test)]
mod tests;

use std::time::Duration;

use http::HeaderName;

pub use body::{IdempotencyBody, RequestBody};
pub use builder::{
    DEFAULT_LEASE, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_RETENTION,
    DEFAULT_RETRY_AFTER, IdempotencyLayerBuilder,
};
pub use fingerprint::{Fingerprint, Fingerprinter, RequestFingerprint};
pub use key::{DEFAULT_MAX_KEY_LENGTH, IdempotencyKey, InvalidKey};
pub use memory::{DEFAULT_MAX_BYTES, DEFAULT_MAX_KEYS, MemoryStore, MemoryStoreBuilder};
pub use outcome::{DEFAULT_REPLAYED_HEADERS, StoredOutcomes, StoredResponse};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{DEFAULT_KEY_PREFIX, RedisStore, RedisStoreBuilder};
pub use route::Route;
pub use scope::{Scope, ScopeExtractor, StoreKey, SubjectOrClientIp};
pub use service::{Idempotency, IdempotencyLayer, ResponseFuture};
pub use store::{Claim, Completion, FencingToken, IdempotencyStore, StoreError, StoreFuture};

/// `Idempotency-Key` (draft-07 §2), also the gRPC metadata key.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// `Idempotent-Replayed: true` marks a replayed outcome.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// What a duplicate gets while the first request with its key runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum InFlight {
    /// 409 problem+json with `Retry-After` at once (draft-07 §2.7; gRPC
    /// 10 `ABORTED`): the default.
    #[default]
    Conflict,
    /// Wait up to this long for the first request to finish, then replay
    /// its outcome (or run, if it released the key); 409 at the deadline.
    Wait(Duration),
}

/// What happens when the store fails (Redis unreachable).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnStoreError {
    /// Serve the request without idempotency (fail open, the default):
    /// logged once per outage, counted
    /// ([`IdempotencyLayer::store_errors`]), marked with an observed
    /// `store_unavailable` decision.
    #[default]
    Allow,
    /// Answer 503 with `Retry-After: 1` (gRPC 14 `UNAVAILABLE`): fail
    /// closed.
    Reject,
}
