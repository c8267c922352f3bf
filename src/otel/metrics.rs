//! Instruments: the HTTP server metrics of the semantic conventions and
//! tower-edge's own counters.

use std::fmt;
use std::sync::Arc;

use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider, UpDownCounter};
use opentelemetry::{InstrumentationScope, Key, KeyValue, StringValue, global};

use super::semconv::{ERROR_TYPE, HTTP_ROUTE};

/// Bucket boundaries of `http.server.request.duration`, in seconds, as the
/// HTTP semantic conventions advise.
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// Attribute naming the rate-limit policy on `tower_edge.rate_limit.limited`.
pub const RATE_LIMIT_POLICY: &str = "tower_edge.rate_limit.policy";

/// Attribute giving why a request was shed on `tower_edge.overload.shed`
/// (`overloaded`, `queue_timeout`, `concurrency_limited`).
pub const OVERLOAD_REASON: &str = "tower_edge.overload.reason";

/// Attribute naming the partition (or per-key limit) of a shed request on
/// `tower_edge.overload.shed`; absent for a global limit without
/// partitions.
pub const OVERLOAD_PARTITION: &str = "tower_edge.overload.partition";

/// Attribute giving the idempotency layer's decision on
/// `tower_edge.idempotency.decisions` and on the server span (`replayed`,
/// `request_in_flight`, `key_reused`, `lease_expired`...).
pub const IDEMPOTENCY_REASON: &str = "tower_edge.idempotency.reason";

pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("tower-edge")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// The HTTP server instruments of the [`OtelLayer`](super::OtelLayer).
pub(crate) struct HttpInstruments {
    pub(crate) duration: Histogram<f64>,
    pub(crate) active: UpDownCounter<i64>,
}

impl HttpInstruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            duration: meter
                .f64_histogram("http.server.request.duration")
                .with_unit("s")
                .with_description("Duration of HTTP server requests.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            active: meter
                .i64_up_down_counter("http.server.active_requests")
                .with_unit("{request}")
                .with_description("Number of active HTTP server requests.")
                .build(),
        }
    }
}

/// tower-edge's own counters, for operators to alert on.
///
/// | instrument | unit | attributes | moved by |
/// |---|---|---|---|
/// | `tower_edge.auth.failures` | `{request}` | `error.type`: for a tower-edge answer its [`Reason`](crate::decision::Reason) (`missing_credentials`, `invalid_request`, `invalid_token`, `insufficient_scope`); for another component's the `error` of `WWW-Authenticate` (those three), `other` for another value, `missing_credentials` when there is none, `unknown` for a 401 without `WWW-Authenticate`; `unauthenticated` / `permission_denied` for gRPC 16 / 7 | the [`OtelLayer`](super::OtelLayer), from the [`Decision`](crate::decision::Decision) of a tower-edge answer; otherwise from 401 responses, 403 responses carrying `WWW-Authenticate` and 400 responses whose challenge says `invalid_request` |
/// | `tower_edge.rate_limit.limited` | `{request}` | `tower_edge.rate_limit.policy`: for a tower-edge limiter the policy that denied (its [`Decision::policy`](crate::decision::Decision::policy)); for another limiter the first item of `RateLimit-Policy` (else `RateLimit`), `unknown` without one | the `OtelLayer`, from the `Decision` of a tower-edge limiter; otherwise from 429 responses and gRPC status 8 |
/// | `tower_edge.overload.shed` | `{request}` | `tower_edge.overload.reason` (the [`Reason`](crate::decision::Reason): `overloaded`, `queue_timeout`, `concurrency_limited`); `tower_edge.overload.partition`: the partition, or the per-key limit, when there is one | the `OtelLayer`, from the `Decision` of the overload layer |
/// | `tower_edge.cache.not_modified` | `{response}` | `http.route` when known | the `OtelLayer`, from 304 responses |
/// | `tower_edge.rate_limit.store.errors` | `{error}` | `error.type` | [`store_error`](Self::store_error), for the Redis store |
/// | `tower_edge.idempotency.decisions` | `{request}` | `tower_edge.idempotency.reason`: the [`Reason`](crate::decision::Reason) of the idempotency layer's [`Decision`](crate::decision::Decision): `replayed`, `request_in_flight` (conflicts), `key_reused` (mismatches), `lease_expired`, `store_unavailable` (store errors), `missing_idempotency_key`, `invalid_idempotency_key`, `content_too_large`, `unreadable_body` | the `OtelLayer`, from the idempotency layer's `Decision` (an answer, or observed on the handler's response) |
/// | `tower_edge.jwks.fetches` | `{fetch}` | `error.type` on failure | [`jwks_fetch_succeeded`](Self::jwks_fetch_succeeded) / [`jwks_fetch_failed`](Self::jwks_fetch_failed) |
///
/// Get the handle the layer uses with [`OtelLayer::metrics`](super::OtelLayer::metrics)
/// and give it to the layers that report through it. Cloning is cheap.
#[derive(Clone)]
pub struct EdgeMetrics {
    inner: Arc<Counters>,
}

struct Counters {
    auth_failures: Counter<u64>,
    rate_limited: Counter<u64>,
    overload_shed: Counter<u64>,
    not_modified: Counter<u64>,
    store_errors: Counter<u64>,
    jwks_fetches: Counter<u64>,
    idempotency: Counter<u64>,
}

impl fmt::Debug for EdgeMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EdgeMetrics").finish_non_exhaustive()
    }
}

impl EdgeMetrics {
    /// Counters from the global meter provider
    /// (`opentelemetry::global::meter_provider`). Install the provider
    /// first: instruments made before it stay no-ops.
    pub fn global() -> Self {
        Self::from_meter(&global::meter_with_scope(scope()))
    }

    /// Counters from `provider`.
    pub fn new<P: MeterProvider + ?Sized>(provider: &P) -> Self {
        Self::from_meter(&provider.meter_with_scope(scope()))
    }

    pub(crate) fn from_meter(meter: &Meter) -> Self {
        let counter = |name: &'static str, unit: &'static str, description: &'static str| {
            meter
                .u64_counter(name)
                .with_unit(unit)
                .with_description(description)
                .build()
        };
        Self {
            inner: Arc::new(Counters {
                auth_failures: counter(
                    "tower_edge.auth.failures",
                    "{request}",
                    "Requests refused for missing or invalid credentials or scope.",
                ),
                rate_limited: counter(
                    "tower_edge.rate_limit.limited",
                    "{request}",
                    "Requests refused by a rate limit.",
                ),
                overload_shed: counter(
                    "tower_edge.overload.shed",
                    "{request}",
                    "Requests shed by overload protection (in-flight limits).",
                ),
                not_modified: counter(
                    "tower_edge.cache.not_modified",
                    "{response}",
                    "304 Not Modified responses served.",
                ),
                store_errors: counter(
                    "tower_edge.rate_limit.store.errors",
                    "{error}",
                    "Failed calls to the shared rate-limit store.",
                ),
                jwks_fetches: counter(
                    "tower_edge.jwks.fetches",
                    "{fetch}",
                    "JWKS key set fetches.",
                ),
                idempotency: counter(
                    "tower_edge.idempotency.decisions",
                    "{request}",
                    "Idempotency-layer replays, conflicts, mismatches, lease expiries and store errors.",
                ),
            }),
        }
    }

    /// Counts a failed call to the shared rate-limit store (Redis), with
    /// `error.type` set to `error_type` (a short, fixed name such as
    /// `timeout` or `connection`).
    pub fn store_error(&self, error_type: &'static str) {
        self.inner
            .store_errors
            .add(1, &[KeyValue::new(ERROR_TYPE, error_type)]);
    }

    /// Counts a successful JWKS fetch.
    pub fn jwks_fetch_succeeded(&self) {
        self.inner.jwks_fetches.add(1, &[]);
    }

    /// Counts a failed JWKS fetch, with `error.type` set to `error_type`
    /// (a short, fixed name such as `timeout`, `status` or `parse`).
    pub fn jwks_fetch_failed(&self, error_type: &'static str) {
        self.inner
            .jwks_fetches
            .add(1, &[KeyValue::new(ERROR_TYPE, error_type)]);
    }

    pub(crate) fn auth_failure(&self, reason: &'static str) {
        self.inner
            .auth_failures
            .add(1, &[KeyValue::new(ERROR_TYPE, reason)]);
    }

    pub(crate) fn rate_limited(&self, policy: StringValue) {
        self.inner.rate_limited.add(
            1,
            &[KeyValue::new(
                Key::from_static_str(RATE_LIMIT_POLICY),
                policy,
            )],
        );
    }

    pub(crate) fn overload_shed(&self, reason: &'static str, partition: Option<StringValue>) {
        let reason = KeyValue::new(Key::from_static_str(OVERLOAD_REASON), reason);
        match partition {
            Some(partition) => self.inner.overload_shed.add(
                1,
                &[
                    reason,
                    KeyValue::new(Key::from_static_str(OVERLOAD_PARTITION), partition),
                ],
            ),
            None => self.inner.overload_shed.add(1, &[reason]),
        }
    }

    pub(crate) fn idempotency(&self, reason: &'static str) {
        self.inner.idempotency.add(
            1,
            &[KeyValue::new(
                Key::from_static_str(IDEMPOTENCY_REASON),
                reason,
            )],
        );
    }

    pub(crate) fn not_modified(&self, route: Option<&super::Route>) {
        match route {
            Some(route) => self
                .inner
                .not_modified
                .add(1, &[KeyValue::new(HTTP_ROUTE, route.to_value())]),
            None => self.inner.not_modified.add(1, &[]),
        }
    }
}
