//! Overload protection: bound the requests in flight and shed the excess
//! at once, cheaply, before it costs anything.
//!
//! Rate limits cap how many requests a client *starts* per second; they do
//! not protect a server whose handlers slow down. When a database
//! saturates, requests pile up in flight, latency grows for everyone and
//! every request ends in a timeout. [`OverloadLayer`] bounds what is in
//! flight instead:
//!
//! * **Admission in `call`, never in `poll_ready`.** `poll_ready` only
//!   forwards to the inner service, so idle keep-alive and gRPC
//!   connections hold no permit (unlike tower's `ConcurrencyLimit`, which
//!   takes its permit in `poll_ready`, which hyper calls before a request
//!   exists).
//! * **Shed at once.** A request over the limit is answered immediately
//!   (never queued, unless a [queue](OverloadLayerBuilder::queue) is
//!   configured): `503` problem+json with `Retry-After` when the server is
//!   overloaded, `429` with `RateLimit-Policy: "name";q=8;qu="concurrent-requests"`
//!   and `RateLimit: "name";r=0` when one client has too many in flight
//!   (draft-ietf-httpapi-ratelimit-headers); gRPC callers get trailers-only
//!   `UNAVAILABLE` (14) and `RESOURCE_EXHAUSTED` (8). The service's error
//!   type is the inner one (`Infallible` stays `Infallible`, so it fits
//!   tonic's router and axum), unlike tower's `LoadShed` and its
//!   `BoxError`.
//! * **The permit lives until the response body ends** (its last frame is
//!   read, it fails, or it is dropped): a streamed response is in flight
//!   while it streams ([`OverloadBody`]).
//!
//! # Limits
//!
//! * A **global** limit, fixed ([`max_in_flight`](OverloadLayerBuilder::max_in_flight))
//!   or **adaptive** ([`adaptive`](OverloadLayerBuilder::adaptive):
//!   [`Gradient2`] by default, [`Aimd`], or your own [`LimitAlgorithm`],
//!   bounded by a minimum and a maximum, fed with the latency from
//!   admission to the response head and with drops: an error of the inner
//!   service, or a 503 / 504 from it).
//! * **Partitions** of the global limit with guaranteed shares
//!   ([`Partition`]: "authenticated 80 %, anonymous 20 %"): a partition
//!   under its share always gets in, one above it only while the limit has
//!   room beyond every other partition's reservation, so a flood from one
//!   partition never takes another's share.
//! * A **per-key** limit ([`KeyLimit`]): at most N in flight per subject,
//!   client IP, API key or route, with the rate limiter's key extractors
//!   (this feature implies `rate-limit` for them and for client-IP
//!   resolution behind trusted proxies). Keys are tracked only while they
//!   have requests in flight, and at most [`max_keys`](OverloadLayerBuilder::max_keys).
//! * **Exempt**: health and readiness paths ([`DEFAULT_EXEMPT_PATHS`]), so
//!   a load balancer never takes an overloaded replica for a dead one and
//!   long-lived health watches hold no permit.
//!
//! # Where in the stack
//!
//! Global shedding right after OpenTelemetry (so the span and metrics
//! count the shed requests) and before any crypto or Redis work; per-client
//! limits after authentication, keyed by subject:
//!
//! ```text
//! correlation -> otel -> overload (global) -> rate_limit(by IP) -> jwt_auth
//!   -> rate_limit(by client) -> overload (per client) -> ...
//! ```
//!
//! # Observing it
//!
//! Every shed response carries a [`Decision`](crate::decision::Decision)
//! (layer `overload`; reason `overloaded`, `queue_timeout` or
//! `concurrency_limited`; the partition or per-key limit as its policy),
//! which the OpenTelemetry layer counts (`tower_edge.overload.shed`, by
//! reason and partition). The layer reports what is in flight, the current
//! limit and what was shed ([`OverloadLayer::stats`]); with the `otel`
//! feature, `OverloadLayer::register_gauges` exports the first two as
//! gauges. A shed request also logs a `debug` event with the reason,
//! partition, in-flight count and limit, inside the request's span.
//!
//! # Default setup
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_edge::overload::OverloadLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = OverloadLayer::new(1); // at most one request in flight
//! let mut service = ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::from("hello")))
//!     });
//!
//! let first = service.ready().await.unwrap().call(Request::new(String::new())).await.unwrap();
//! assert_eq!(first.status(), StatusCode::OK);
//! // The first response's body is not read yet: its request is in flight.
//! assert_eq!(layer.stats().in_flight, 1);
//! let second = service.ready().await.unwrap().call(Request::new(String::new())).await.unwrap();
//! assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(second.headers()["retry-after"], "1");
//! drop(first); // body dropped: the permit is released
//! assert_eq!(layer.stats().in_flight, 0);
//! # }
//! ```
//!
//! # Customised
//!
//! An adaptive limit split between authenticated and anonymous clients, a
//! per-client limit, a short queue, its own health path:
//!
//! ```
//! use std::time::Duration;
//! use tower_edge::overload::{AdaptiveLimit, KeyLimit, OverloadLayer, Partition};
//! use tower_edge::rate_limit::SubjectOrIp;
//!
//! let layer = OverloadLayer::builder()
//!     .adaptive(AdaptiveLimit::gradient2().initial(100).min(10).max(2000))
//!     .partition(Partition::authenticated(80))
//!     .partition(Partition::new("anonymous", 20))
//!     .per_key(KeyLimit::new("per-client", 16).key(SubjectOrIp))
//!     .queue(32, Duration::from_millis(50))
//!     .exempt_paths(["/healthz", "/readyz", "/status"])
//!     .trusted_proxies(["10.0.0.0/8"])
//!     .build()
//!     .expect("valid configuration");
//! assert_eq!(layer.stats().limit, Some(100));
//! ```

mod adaptive;
mod algorithms;
mod body;
mod builder;
mod future;
mod keyed;
mod limiter;
#[cfg(feature = "otel")]
mod metrics;
mod permit;
mod queue;
mod service;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;
use tower_layer::Layer;

pub use adaptive::AdaptiveLimit;
pub use algorithms::{
    Aimd, DEFAULT_INITIAL_LIMIT, DEFAULT_MAX_LIMIT, DEFAULT_MIN_LIMIT, Gradient2, LimitAlgorithm,
    Sample,
};
pub use body::OverloadBody;
pub use builder::{DEFAULT_MAX_KEYS, OverloadLayerBuilder, Partition};
pub use future::ResponseFuture;
pub use keyed::KeyLimit;
pub use service::Overload;

use crate::rate_limit::RequestInfo;
use crate::rate_limit::client_ip::ClientIpConfig;
use crate::rejection::Rejections;
use keyed::KeyLimiter;
use limiter::GlobalLimiter;

/// Paths exempt by default: the usual Kubernetes health and readiness
/// probes and the gRPC health service (`Check`, and `Watch`, a stream that
/// would otherwise hold a permit for as long as it is watched).
pub const DEFAULT_EXEMPT_PATHS: &[&str] = &[
    "/health",
    "/healthz",
    "/livez",
    "/readyz",
    "/grpc.health.v1.Health/Check",
    "/grpc.health.v1.Health/Watch",
];

type Predicate = dyn Fn(&RequestInfo<'_>) -> bool + Send + Sync;

/// The state every clone of the layer and its services shares.
pub(crate) struct Shared {
    global: Option<GlobalLimiter>,
    keyed: Option<KeyLimiter>,
    exempt_paths: Box<[Box<str>]>,
    /// One bit per exempt path, from its length and last byte (see
    /// `service::path_bit`).
    exempt_bits: u64,
    exempt: Option<Arc<Predicate>>,
    /// A global limit without partitions, no per-key limit, no exemption
    /// predicate: admission reads the path alone.
    simple: bool,
    ip: ClientIpConfig,
    rejections: Rejections,
    retry_after: HeaderValue,
    shed_overloaded: AtomicU64,
    shed_queue_timeout: AtomicU64,
    shed_concurrency: AtomicU64,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OverloadLimits")
            .field(
                "limit",
                &self
                    .global
                    .as_ref()
                    .map(|g| g.limit.load(Ordering::Relaxed)),
            )
            .field("per_key", &self.keyed.as_ref().map(|k| &*k.name))
            .field("exempt_paths", &self.exempt_paths)
            .finish_non_exhaustive()
    }
}

/// Layer that applies [`Overload`]: in-flight limits and immediate
/// shedding. See the [module docs](self).
///
/// Cloning is cheap and clones share the limits: every service made from
/// it (one per connection) counts against the same in-flight numbers.
#[derive(Clone, Debug)]
pub struct OverloadLayer {
    shared: Arc<Shared>,
}

/// What an [`OverloadLayer`] has in flight and has shed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OverloadStats {
    /// Requests holding a slot of the global limit (0 without one).
    pub in_flight: usize,
    /// The global limit now (`None` without one).
    pub limit: Option<usize>,
    /// Requests shed because the global limit, a partition's share or the
    /// key cap was reached (503).
    pub shed_overloaded: u64,
    /// Requests shed at the queue's deadline (503).
    pub shed_queue_timeout: u64,
    /// Requests shed by the per-key limit (429).
    pub shed_concurrency_limited: u64,
    /// Requests waiting in the queue.
    pub queued: usize,
    /// Keys with requests in flight (`None` without a per-key limit).
    pub tracked_keys: Option<usize>,
    /// Each partition (then `other`, requests of no partition).
    pub partitions: Vec<PartitionStats>,
}

/// What one partition has in flight and has shed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PartitionStats {
    /// The partition's name.
    pub name: Arc<str>,
    /// Its requests in flight.
    pub in_flight: usize,
    /// Its guaranteed share of the current limit.
    pub share: usize,
    /// Its requests shed.
    pub shed: u64,
}

impl OverloadLayer {
    /// A fixed global limit of `max_in_flight` requests, health paths
    /// exempt.
    ///
    /// # Panics
    ///
    /// When `max_in_flight` is 0; use [`builder`](Self::builder) to get
    /// an error instead.
    pub fn new(max_in_flight: usize) -> Self {
        Self::builder()
            .max_in_flight(max_in_flight)
            .build()
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A builder to customise the layer.
    pub fn builder() -> OverloadLayerBuilder {
        OverloadLayerBuilder::new()
    }

    /// What is in flight, the current limit, and what was shed.
    pub fn stats(&self) -> OverloadStats {
        let shared = &self.shared;
        let global = shared.global.as_ref();
        let limit = global.map(|g| g.limit.load(Ordering::Relaxed));
        let partitions = global
            .and_then(|g| g.partitions.as_ref())
            .map(|p| {
                p.names
                    .iter()
                    .enumerate()
                    .map(|(i, name)| PartitionStats {
                        name: Arc::clone(name),
                        in_flight: p.in_flight(i),
                        share: p.share(i, limit.unwrap_or(0)),
                        shed: p.shed[i].load(Ordering::Relaxed),
                    })
                    .collect()
            })
            .unwrap_or_default();
        OverloadStats {
            in_flight: global.map_or(0, |g| g.in_flight.load(Ordering::Relaxed)),
            limit,
            shed_overloaded: shared.shed_overloaded.load(Ordering::Relaxed),
            shed_queue_timeout: shared.shed_queue_timeout.load(Ordering::Relaxed),
            shed_concurrency_limited: shared.shed_concurrency.load(Ordering::Relaxed),
            queued: global.and_then(|g| g.queue.as_ref()).map_or(0, |q| q.len()),
            tracked_keys: shared.keyed.as_ref().map(KeyLimiter::len),
            partitions,
        }
    }
}

impl<S> Layer<S> for OverloadLayer {
    type Service = Overload<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Overload {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}
