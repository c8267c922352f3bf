//! Overload protection in the examples (feature `overload`; without it the
//! functions return tower's `Identity`, a layer that does nothing):
//!
//! * [`global_shedding`] right after OpenTelemetry: at most
//!   `MAX_IN_FLIGHT` requests in flight (default
//!   [`DEFAULT_MAX_IN_FLIGHT`]); the excess is answered 503 with
//!   `Retry-After` at once (gRPC: `UNAVAILABLE`), before any signature
//!   check or Redis call. Health and readiness paths are exempt.
//! * [`per_client`] after authentication: at most
//!   [`per_client_in_flight`] requests in flight per subject (per client IP
//!   when anonymous; `MAX_IN_FLIGHT_PER_CLIENT`, default an eighth of
//!   `MAX_IN_FLIGHT`), answered 429 (gRPC: `RESOURCE_EXHAUSTED`), so one
//!   client cannot take the whole global limit.
//!
//! To watch it by hand, make every handler slow and the limit small:
//! `ORIGIN_DELAY_MS=200 ORIGIN_CAPACITY=8 MAX_IN_FLIGHT=8 MAX_IN_FLIGHT_PER_CLIENT=8 RATE_LIMIT="100000/s burst 100000" cargo run --release --example axum --no-default-features --features jwt-auth,rate-limit,cache-headers,correlation-id,idempotency,overload`
//! (without the default `response-cache`, which would answer `/products`
//! from memory after the first request), then
//! `wrk -c 64 -d 5s http://127.0.0.1:3000/products`: about
//! 8 / 0.2 s = 40 requests per second succeed in about 200 ms, the rest
//! get 503 at once (`benches/overload.sh` measures exactly this).

use std::net::IpAddr;

use tower_edge::ConfigError;

use super::Config;

/// The global in-flight limit when `MAX_IN_FLIGHT` is not set: 256.
///
/// Half of [`DEFAULT_MAX_CONNECTIONS`](super::DEFAULT_MAX_CONNECTIONS):
/// about what a replica with a database pool of a few dozen connections
/// and handlers of some tens of milliseconds works through without
/// queueing. Measure your own: the in-flight count at which latency starts
/// to climb (or use the adaptive limit, `AdaptiveLimit::gradient2`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// Reads `MAX_IN_FLIGHT`: a whole number from 1.
pub fn parse_max_in_flight(value: &str) -> Result<usize, String> {
    match value.trim().parse::<usize>() {
        Ok(0) => Err("MAX_IN_FLIGHT: at least 1".to_owned()),
        Ok(max) => Ok(max),
        Err(e) => Err(format!("MAX_IN_FLIGHT: {e}")),
    }
}

/// Each client's in-flight limit: `MAX_IN_FLIGHT_PER_CLIENT`, by default
/// an eighth of the global limit (at least 1).
pub fn per_client_in_flight(config: &Config) -> u32 {
    config.max_in_flight_per_client.unwrap_or_else(|| {
        u32::try_from(config.max_in_flight / 8)
            .unwrap_or(u32::MAX)
            .max(1)
    })
}

/// The global shedding layer (see the module docs).
#[cfg(feature = "overload")]
pub fn global_shedding(
    config: &Config,
) -> Result<tower_edge::overload::OverloadLayer, ConfigError> {
    let layer = tower_edge::overload::OverloadLayer::builder()
        .max_in_flight(config.max_in_flight)
        .build()?;
    // In flight and the limit, to the meter provider installed at start.
    #[cfg(feature = "otel")]
    layer.register_gauges(opentelemetry::global::meter_provider().as_ref());
    Ok(layer)
}

/// Without `--features overload`: no layer.
#[cfg(not(feature = "overload"))]
pub fn global_shedding(_config: &Config) -> Result<tower::layer::util::Identity, ConfigError> {
    Ok(tower::layer::util::Identity::new())
}

/// The per-client in-flight limit (see the module docs); `peer` finds the
/// TCP peer for anonymous clients.
#[cfg(feature = "overload")]
pub fn per_client(
    config: &Config,
    peer: impl Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync + 'static,
) -> Result<tower_edge::overload::OverloadLayer, ConfigError> {
    use tower_edge::overload::{KeyLimit, OverloadLayer};
    use tower_edge::rate_limit::SubjectOrIp;
    OverloadLayer::builder()
        .per_key(KeyLimit::new("client-in-flight", per_client_in_flight(config)).key(SubjectOrIp))
        .trusted_proxies(&config.trusted_proxies)
        .peer_addr_with(peer)
        .build()
}

/// Without `--features overload`: no layer.
#[cfg(not(feature = "overload"))]
pub fn per_client(
    _config: &Config,
    _peer: impl Fn(&http::Extensions) -> Option<IpAddr> + Send + Sync + 'static,
) -> Result<tower::layer::util::Identity, ConfigError> {
    Ok(tower::layer::util::Identity::new())
}
