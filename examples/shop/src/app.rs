//! The application: routes, and every tower-edge layer in the recommended
//! order (DESIGN "How the layers compose"), outermost first:
//!
//! ```text
//! correlation -> otel -> access log -> overload (global) -> rate limit (per IP, flood guard)
//!   -> jwt (optional: product reads are public) -> rate limit (per client)
//!   -> overload (per client) -> idempotency (POST /orders)
//!   -> response cache (Redis tier with REDIS_URL) -> cache headers
//!   -> cache fields (Edge-Cache-Control, Cache-Groups) -> handler (cache-aside inside)
//! ```
//!
//! The pieces the other examples share (`examples/common`) build each
//! layer from the same environment, so the shop behaves as they do.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::handler::Handler;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use http::{HeaderValue, StatusCode};
use tower::ServiceBuilder;
use tower_edge::ConfigError;
use tower_edge::access_log::AccessLogLayer;
use tower_edge::cache_headers::{CacheControl, CacheHeadersLayer, CacheRule};
use tower_edge::correlation::CorrelationIdLayer;
use tower_edge::idempotency::IdempotencyLayerBuilder;
use tower_edge::jwt_auth::{AuthMode, RequireScopeLayer};
use tower_edge::rejection::Problem;
use tower_edge::response_cache::{ResponseCacheHandle, ResponseCacheLayer};
use tracing::Instrument;

use crate::common;
use crate::config::ShopConfig;
use crate::db::Db;
use crate::db::health::DbProbe;
use crate::error::respond;
pub use crate::state::AppState;
use crate::{orders, products};

/// The built application.
#[derive(Debug)]
pub struct App {
    /// The API, every layer included.
    pub router: Router,
    /// The handlers' state.
    pub state: AppState,
    /// The response cache: counters, purges.
    pub cache: ResponseCacheHandle,
    /// What `/readyz` checks.
    pub readiness: Readiness,
}

/// What `/readyz` checks: the databases, each on a connection of its own,
/// and Redis when configured.
#[derive(Clone, Debug)]
pub struct Readiness {
    /// The primary's probe.
    pub primary: DbProbe,
    /// The replica's probe (informational: reads fall back to the primary).
    pub replica: Option<DbProbe>,
    /// The shared Redis connection.
    pub redis: Option<tower_edge::redis::RedisBackend>,
}

/// The client IP of a request, from axum's `ConnectInfo` (see
/// [`crate::serve`]); the rate limiters read it behind `TRUSTED_PROXIES`.
fn peer_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())
}

/// Builds the application on `db`. Call after installing the meter
/// provider ([`crate::telemetry::install_metrics`]): the layers take their
/// meters now.
///
/// # Errors
///
/// A configuration a layer refuses, naming the field.
pub fn build(config: &ShopConfig, db: Db) -> Result<App, ConfigError> {
    let edge = &config.edge;
    let cache = response_cache(config)?;
    let state = AppState {
        db: db.clone(),
        aside: config.cache.then(|| cache.cache_aside()),
    };
    let handle = cache.handle();
    let flood_guard = common::flood_guard(edge).peer_addr_with(peer_ip).build()?;
    let stack = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(otel_layer()?)
        // One line per request (target `tower_edge::access_log`): status,
        // duration, the layer that answered and why, the correlation and
        // trace IDs, the client IP the flood guard keys by.
        .layer(
            AccessLogLayer::builder()
                .client_ip_as(&flood_guard)
                .build()?,
        )
        .layer(common::overload::global_shedding(edge)?)
        .layer(flood_guard)
        .layer(common::auth_layer(edge, AuthMode::Optional)?)
        .layer(common::per_client(edge).peer_addr_with(peer_ip).build()?)
        .layer(common::overload::per_client(edge, peer_ip)?)
        .layer(idempotency(config)?.peer_addr_with(peer_ip).build()?);
    // Innermost: the caches (a layer of their own, so `SHOP_CACHE=off` can
    // leave the response cache out).
    let headers = CacheHeadersLayer::builder()
        .rule(
            CacheRule::new(
                CacheControl::new()
                    .public()
                    .max_age(std::time::Duration::from_secs(60)),
            )
            .path_prefix("/products"),
        )
        .build()?;
    let fields = common::response_cache::ProductCacheFieldsLayer;

    let scope = |name: &str| {
        RequireScopeLayer::builder()
            .scope(name)
            .realm(common::REALM)
            .build()
    };
    let router = Router::new()
        .route("/products", get(products::list))
        .route(
            "/products/{id}",
            get(products::get).put(products::put.layer(scope("products:write")?)),
        )
        .route(
            "/orders",
            post(orders::create.layer(scope(orders::WRITE_SCOPE)?)),
        )
        .route(
            "/orders/{id}",
            get(orders::get.layer(scope(orders::READ_SCOPE)?)),
        )
        .fallback(|| async { respond(Problem::new(StatusCode::NOT_FOUND)) })
        .method_not_allowed_fallback(|| async {
            respond(Problem::new(StatusCode::METHOD_NOT_ALLOWED))
        })
        .with_state(state.clone());
    let router = if config.cache {
        router.layer(
            ServiceBuilder::new()
                .layer(cache)
                .layer(headers)
                .layer(fields),
        )
    } else {
        router.layer(ServiceBuilder::new().layer(headers).layer(fields))
    };
    let router = router.layer(stack);
    let router = match &config.replica_id {
        Some(id) => router.layer(axum::middleware::from_fn_with_state(
            ReplicaTag::new(id)?,
            served_by,
        )),
        None => router,
    };
    let readiness = Readiness {
        primary: DbProbe::new("primary", db.primary().pg_config()),
        replica: db.replica().map(|r| DbProbe::new("replica", r.pg_config())),
        redis: edge.redis_backend.clone(),
    };
    Ok(App {
        router,
        state,
        cache: handle,
        readiness,
    })
}

/// The response cache (RFC 9111): memory, plus a Redis tier shared by
/// every replica with `REDIS_URL` (entries and purges), under
/// `REDIS_PREFIX:cache`.
fn response_cache(config: &ShopConfig) -> Result<ResponseCacheLayer, ConfigError> {
    let mut builder = ResponseCacheLayer::builder();
    if let Some(backend) = &config.edge.redis_backend {
        builder = builder
            .redis(backend.clone())
            .redis_key_prefix(format!("{}:cache", config.redis_prefix));
    }
    let layer = builder.build()?;
    layer
        .handle()
        .register_metrics(opentelemetry::global::meter_provider().as_ref());
    Ok(layer)
}

/// `POST /orders` needs an `Idempotency-Key` (the examples' rule), kept in
/// Redis under `REDIS_PREFIX:idem` with `REDIS_URL`, so a retry reaching
/// another replica is still replayed. When Redis fails, orders are
/// refused (503 with `Retry-After`) rather than run without the key: a
/// retry meanwhile would place a second order.
fn idempotency(config: &ShopConfig) -> Result<IdempotencyLayerBuilder, ConfigError> {
    let builder = common::orders::idempotency(&config.edge, &[])?
        .on_store_error(tower_edge::idempotency::OnStoreError::Reject);
    Ok(match &config.edge.redis_backend {
        Some(backend) => builder.store(
            tower_edge::idempotency::RedisStore::with_backend(backend.clone())
                .key_prefix(format!("{}:idem", config.redis_prefix))
                .build()?,
        ),
        None => builder,
    })
}

/// `SHOP_REPLICA_ID`, as a log field and a header value.
#[derive(Clone, Debug)]
struct ReplicaTag {
    id: String,
    header: HeaderValue,
}

impl ReplicaTag {
    fn new(id: &str) -> Result<Self, ConfigError> {
        let header = HeaderValue::from_str(id)
            .map_err(|_| ConfigError::new("SHOP_REPLICA_ID", "not a valid header value"))?;
        Ok(Self {
            id: id.to_owned(),
            header,
        })
    }
}

/// Every log line of the request carries `replica`, and the response
/// `x-served-by` (the load test sees the round robin).
async fn served_by(State(tag): State<ReplicaTag>, request: Request, next: Next) -> Response {
    let span = tracing::info_span!("shop", replica = %tag.id);
    let mut response = next.run(request).instrument(span).await;
    response
        .headers_mut()
        .insert("x-served-by", tag.header.clone());
    response
}

/// OpenTelemetry's server span and metrics, spans named after axum's route
/// template (`GET /products/{id}`, never the raw path).
fn otel_layer() -> Result<tower_edge::otel::OtelLayer, ConfigError> {
    use tower_edge::otel::{OtelLayer, RequestHead, Route};
    OtelLayer::builder()
        .route_with(|head: &RequestHead<'_>| {
            let matched = head.extensions().get::<axum::extract::MatchedPath>()?;
            Some(Route::new(matched.as_str()))
        })
        .build()
}
