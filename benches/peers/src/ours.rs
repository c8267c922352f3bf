//! tower-edge's stacks of the end-to-end benchmark: the `full` stack (every
//! layer of the jobs the `peers` stack does too, in the recommended order)
//! and any subset of it by layer name.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::ConnectInfo;
use tower::ServiceBuilder;
use tower_edge::cache_headers::CacheHeadersLayer;
use tower_edge::correlation::CorrelationIdLayer;
use tower_edge::jwt_auth::{Algorithm, AuthMode, JwtAuthLayer, VerificationKey};
use tower_edge::rate_limit::{ClientIp, LimitRateLayer, Policy, Quota, SubjectOrIp};

/// The layers `--stack` can name, outermost first.
pub const LAYERS: [&str; 5] = [
    "correlation",
    "rate-limit-ip",
    "jwt",
    "rate-limit-client",
    "cache-headers",
];

/// The layers of the full stack: the flood guard by IP, JWT auth, the
/// per-client limit by subject or IP. wrk sends anonymous requests, so JWT
/// auth (optional mode) takes its "no credentials" path; the quotas are
/// high enough that nothing is ever limited, so both rate limiters do their
/// full work (key, store, `RateLimit` headers) on every request.
fn layers() -> (LimitRateLayer, JwtAuthLayer, LimitRateLayer) {
    let peer_ip = |ext: &http::Extensions| {
        ext.get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
    };
    let huge = Quota::per_second(1_000_000_000);
    let flood_guard = LimitRateLayer::builder()
        .policy(Policy::new("ip", huge).key(ClientIp))
        .peer_addr_with(peer_ip)
        .build()
        .expect("valid flood guard");
    let per_client = LimitRateLayer::builder()
        .policy(Policy::new("client", huge).key(SubjectOrIp))
        .peer_addr_with(peer_ip)
        .build()
        .expect("valid per-client limit");
    let auth = JwtAuthLayer::builder()
        .key(VerificationKey::hmac(Algorithm::HS256, crate::SECRET.as_bytes()).expect("valid key"))
        .mode(AuthMode::Optional)
        .build()
        .expect("valid auth");
    (flood_guard, auth, per_client)
}

/// Every default layer in the recommended order.
pub fn full_stack(router: Router) -> Router {
    let (flood_guard, auth, per_client) = layers();
    router.layer(
        ServiceBuilder::new()
            .layer(CorrelationIdLayer::new())
            .layer(flood_guard)
            .layer(auth)
            .layer(per_client)
            .layer(CacheHeadersLayer::new()),
    )
}

/// The named layers only, in the full stack's order, innermost applied
/// first.
pub fn some_layers(mut router: Router, names: &[String]) -> Router {
    let (flood_guard, auth, per_client) = layers();
    let has = |name: &str| names.iter().any(|n| n == name);
    if has("cache-headers") {
        router = router.layer(CacheHeadersLayer::new());
    }
    if has("rate-limit-client") {
        router = router.layer(per_client);
    }
    if has("jwt") {
        router = router.layer(auth);
    }
    if has("rate-limit-ip") {
        router = router.layer(flood_guard);
    }
    if has("correlation") {
        router = router.layer(CorrelationIdLayer::new());
    }
    router
}
