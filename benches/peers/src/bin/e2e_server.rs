//! The end-to-end benchmark server: an axum hello-world, bare or behind
//! tower-edge's full stack. Driven by `benches/e2e.sh`.
//!
//! ```text
//! e2e_server --stack bare|full|<layer>[,<layer>...] [--addr 127.0.0.1:3000]
//! ```
//!
//! `full` wires every default tower-edge layer, outermost first in the
//! order the crate docs recommend (correlation -> rate_limit(by IP) ->
//! jwt_auth -> rate_limit(by user) -> cache_headers -> handler), as one
//! `ServiceBuilder` in one `Router::layer`. `otel` is left out: without an
//! SDK installed it measures a no-op exporter, which says nothing about a
//! real deployment. A layer added to tower-edge goes into `full_stack` at
//! its place in that order.
//!
//! A list of layer names (`correlation`, `rate-limit-ip`, `jwt`,
//! `rate-limit-client`, `cache-headers`) serves only those, in the same
//! order, each in its own `Router::layer` (so each also pays axum's boxing
//! of the layered route): what one layer costs end to end.

use std::net::SocketAddr;
use std::process::ExitCode;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_edge::cache_headers::CacheHeadersLayer;
use tower_edge::correlation::CorrelationIdLayer;
use tower_edge::jwt_auth::{Algorithm, AuthMode, JwtAuthLayer, VerificationKey};
use tower_edge::rate_limit::{ClientIp, LimitRateLayer, Policy, Quota, SubjectOrIp};

#[derive(Clone, PartialEq, Eq, Debug)]
enum Stack {
    Bare,
    Full,
    /// Some of the layers, by name.
    Only(Vec<String>),
}

/// The layers `--stack` can name, outermost first.
const LAYERS: [&str; 5] = [
    "correlation",
    "rate-limit-ip",
    "jwt",
    "rate-limit-client",
    "cache-headers",
];

fn app() -> Router {
    Router::new().route("/", get(|| async { "Hello, World!" }))
}

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
        .key(
            VerificationKey::hmac(Algorithm::HS256, b"e2e-bench-secret-of-at-least-32-bytes")
                .expect("valid key"),
        )
        .mode(AuthMode::Optional)
        .build()
        .expect("valid auth");
    (flood_guard, auth, per_client)
}

/// Every default layer in the recommended order.
fn full_stack(router: Router) -> Router {
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
fn some_layers(mut router: Router, names: &[String]) -> Router {
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

fn parse_args() -> Result<(Stack, SocketAddr), String> {
    let mut stack = None;
    let mut addr: SocketAddr = ([127, 0, 0, 1], 3000).into();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stack" => {
                stack = Some(match args.next().as_deref() {
                    Some("bare") => Stack::Bare,
                    Some("full") => Stack::Full,
                    Some(list) => {
                        let names: Vec<String> = list.split(',').map(str::to_owned).collect();
                        if let Some(bad) = names.iter().find(|n| !LAYERS.contains(&n.as_str())) {
                            return Err(format!(
                                "--stack: unknown layer {bad:?} (layers: {})",
                                LAYERS.join(", ")
                            ));
                        }
                        Stack::Only(names)
                    }
                    None => return Err("--stack takes bare, full or a list of layers".into()),
                })
            }
            "--addr" => {
                let value = args.next().ok_or("--addr takes an address")?;
                addr = value
                    .parse()
                    .map_err(|e| format!("--addr {value:?}: {e}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let stack = stack.ok_or("--stack bare|full is required")?;
    if !addr.ip().is_loopback() {
        return Err(format!("--addr must be a loopback address, not {addr}"));
    }
    Ok((stack, addr))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (stack, addr) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!(
                "e2e_server: {message}\nusage: e2e_server --stack bare|full|<layer>[,<layer>...] [--addr 127.0.0.1:3000]"
            );
            return ExitCode::from(2);
        }
    };
    let router = match &stack {
        Stack::Bare => app(),
        Stack::Full => full_stack(app()),
        Stack::Only(names) => some_layers(app(), names),
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("e2e_server: cannot bind {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("e2e_server: {stack:?} stack listening on http://{addr}/");
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(err) = axum::serve(listener, service).await {
        eprintln!("e2e_server: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
