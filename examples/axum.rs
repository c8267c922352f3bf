//! A small product API on axum behind the whole tower-edge stack.
//!
//! ```text
//! cargo run --example axum                    # default features
//! cargo run --example axum --features otel    # + OpenTelemetry (stdout, or OTLP)
//! ```
//!
//! The start-up output prints a development token and commands to try.
//!
//! Routes:
//!
//! * `GET /health`: public.
//! * `GET /products`, `GET /products/{id}`: public, cacheable
//!   (`Cache-Control: public, max-age=60`, ETag, 304 on `If-None-Match`).
//! * `PUT /products/{id}`: needs scope `products:write`; honours `If-Match`.
//! * `GET /me`: needs a token; returns its subject and scopes.
//! * `POST /orders`: needs scope `orders:write` and an `Idempotency-Key`;
//!   a retry replays the first 201 (see `common::orders`); `GET /orders/{id}`.
//!
//! Layers, outermost first: correlation ID → OpenTelemetry (feature `otel`)
//! → access log (one line per request) → global shedding → per-IP flood guard → JWT (optional mode: public routes work
//! anonymously) → per-client quota (by subject, else IP) → idempotency
//! keys → cache headers.
//!
//! Connections, against slow clients ("slowloris"): at most
//! `MAX_CONNECTIONS` (default 512) are open at once, further clients wait
//! in the listen backlog until one closes; and a client has
//! `HEADER_READ_TIMEOUT_MS` (default 10 000) to send each request head (and
//! the first bytes of its connection), else the server closes the
//! connection, as it does a kept-alive connection silent that long.
//! `axum::serve` sets neither (axum 0.8): a few hundred clients sending
//! half a request head each would hold as many connections, and file
//! descriptors, for ever. So [`serve`] runs the same hyper-util server
//! through [`common::serve_http`], configured. An HTTP/2 (h2c) connection
//! gets the timeout for its preface only, then PINGs; see `common` for
//! why, and why these defaults.
//!
//! Environment (all optional): `BIND` (default `127.0.0.1:3000`),
//! `JWT_SECRET`, `JWT_ISSUER`, `JWT_AUDIENCE`, `RATE_LIMIT` (e.g.
//! `600/min burst 60`), `TRUSTED_PROXIES` (CIDRs, comma-separated),
//! `MAX_CONNECTIONS`, `HEADER_READ_TIMEOUT_MS`,
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (with `--features otel`: spans, metrics
//! and logs over OTLP/HTTP), `RUST_LOG`, `LOG_FORMAT` (`json` for JSON
//! lines; see `common::logging`).

#[path = "common/mod.rs"]
pub mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use tower::{ServiceBuilder, ServiceExt};
use tower_edge::ConfigError;
use tower_edge::Subject;
use tower_edge::access_log::AccessLogLayer;
use tower_edge::cache_headers::{
    CacheControl, CacheHeadersLayer, CacheRule, ETag, Preconditions, Representation,
};
use tower_edge::correlation::CorrelationIdLayer;
use tower_edge::jwt_auth::{AuthMode, RequireScopeLayer, Scopes};
use tower_edge::rejection::{Problem, Rejections};

use common::Config;

#[derive(Debug, Clone, Serialize)]
struct Product {
    id: u64,
    name: String,
    price_cents: u64,
}

#[derive(Debug, Deserialize)]
struct ProductUpdate {
    name: String,
    price_cents: u64,
}

/// The in-memory "database". The lock is never held across an `.await`.
type Products = Arc<RwLock<BTreeMap<u64, Product>>>;

fn seed() -> Products {
    let products = [(1, "keyboard", 4_900), (2, "mouse", 2_500)].map(|(id, name, price_cents)| {
        let name = name.to_owned();
        (
            id,
            Product {
                id,
                name,
                price_cents,
            },
        )
    });
    Arc::new(RwLock::new(BTreeMap::from(products)))
}

/// The application: routes plus the tower-edge stack, outermost first.
///
/// # Errors
///
/// A configuration a layer refuses (a bad `TRUSTED_PROXIES` entry...),
/// naming the field.
pub fn app(config: &Config) -> Result<Router, ConfigError> {
    app_with(config, Router::new())
}

/// [`app`] with `extra` routes behind the same stack (the tests add
/// handlers that log and call out).
///
/// # Errors
///
/// As [`app`].
pub fn app_with(config: &Config, extra: Router) -> Result<Router, ConfigError> {
    // The client IP comes from `ConnectInfo` (see `main`). With tower-edge's
    // `axum` feature this hook is built in.
    let peer_ip = |ext: &axum::http::Extensions| {
        ext.get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
    };
    let flood_guard = common::flood_guard(config)
        .peer_addr_with(peer_ip)
        .build()?;
    let stack = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(otel_layer()?)
        // One line per request, with the client IP the flood guard keys by.
        .layer(
            AccessLogLayer::builder()
                .client_ip_as(&flood_guard)
                .build()?,
        )
        .layer(common::overload::global_shedding(config)?)
        .layer(flood_guard)
        .layer(common::auth_layer(config, AuthMode::Optional)?)
        .layer(common::per_client(config).peer_addr_with(peer_ip).build()?)
        .layer(common::overload::per_client(config, peer_ip)?)
        .layer(
            common::orders::idempotency(config, &[])?
                .peer_addr_with(peer_ip)
                .build()?,
        )
        .layer(common::response_cache::layer(config)?)
        .layer(
            CacheHeadersLayer::builder()
                .rule(
                    CacheRule::new(
                        CacheControl::new()
                            .public()
                            .max_age(Duration::from_secs(60)),
                    )
                    .path_prefix("/products"),
                )
                .build()?,
        )
        .layer(common::response_cache::ProductCacheFieldsLayer)
        .option_layer(common::origin_delay(config));

    let can_write = RequireScopeLayer::builder()
        .scope("products:write")
        .realm(common::REALM)
        .build()?;

    Ok(Router::new()
        .route("/health", get(health))
        .route("/products", get(list_products))
        .route(
            "/products/{id}",
            get(get_product).put(put_product.layer(can_write)),
        )
        .route("/me", get(me))
        .with_state(seed())
        .merge(orders_routes()?)
        .merge(extra)
        .layer(stack))
}

/// `POST /orders` (scope `orders:write`; the idempotency layer requires an
/// `Idempotency-Key`) and `GET /orders/{id}`: see `common::orders`.
fn orders_routes() -> Result<Router, ConfigError> {
    use common::orders::{Orders, SCOPE};
    let can_order = RequireScopeLayer::builder()
        .scope(SCOPE)
        .realm(common::REALM)
        .build()?;
    let create = |State(orders): State<Orders>, body: axum::body::Bytes| async move {
        match orders.create(&body) {
            Ok((location, json)) => (
                StatusCode::CREATED,
                [
                    (header::LOCATION, location),
                    (
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    ),
                ],
                json,
            )
                .into_response(),
            Err(problem) => Rejections::default()
                .http_response::<Body>(*problem)
                .into_response(),
        }
    };
    let read = |State(orders): State<Orders>, Path(id): Path<String>| async move {
        match orders.get(&id) {
            Some(json) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                json,
            )
                .into_response(),
            None => Rejections::default()
                .http_response::<Body>(Problem::new(StatusCode::NOT_FOUND))
                .into_response(),
        }
    };
    Ok(Router::new()
        .route("/orders", axum::routing::post(create.layer(can_order)))
        .route("/orders/{id}", get(read))
        .with_state(Orders::default()))
}

/// Serves [`app`] on `listener` until `shutdown`, then drains the
/// connections, with the connection limits of [`common::serve_http`].
///
/// Not `axum::serve`: it offers no header read timeout and no connection
/// limit (axum 0.8), so a slowloris client could hold connections open
/// for ever. The same hyper-util server it uses, configured.
///
/// # Errors
///
/// A configuration a layer refuses, before accepting anything.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ConfigError> {
    let app = app(&config)?;
    let service_for = |peer: SocketAddr| {
        // `ConnectInfo` gives the rate limiter the client's address, as
        // `into_make_service_with_connect_info` does with `axum::serve`.
        app.clone()
            .map_request(move |mut request: axum::http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            })
    };
    common::serve_http(listener, &config, service_for, shutdown).await;
    Ok(())
}

/// OpenTelemetry's server span and metrics, when built with `--features otel`.
#[cfg(feature = "otel")]
fn otel_layer() -> Result<tower_edge::otel::OtelLayer, ConfigError> {
    use tower_edge::otel::{OtelLayer, Route};
    // Name spans after axum's route template (built in with feature `axum`).
    OtelLayer::builder()
        .route_with(|head: &tower_edge::otel::RequestHead<'_>| {
            let matched = head.extensions().get::<axum::extract::MatchedPath>()?;
            Some(Route::new(matched.as_str()))
        })
        .build()
}

/// Without `--features otel`: no layer.
#[cfg(not(feature = "otel"))]
fn otel_layer() -> Result<tower::layer::util::Identity, ConfigError> {
    Ok(tower::layer::util::Identity::new())
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn list_products(State(products): State<Products>) -> Json<Vec<Product>> {
    // The cache layer hashes this body into the ETag and answers 304.
    Json(products.read().unwrap().values().cloned().collect())
}

async fn get_product(State(products): State<Products>, Path(id): Path<u64>) -> Response {
    match products.read().unwrap().get(&id) {
        Some(product) => Json(product.clone()).into_response(),
        None => not_found(id),
    }
}

/// Replaces a product's name and price if the client's copy is current
/// (`If-Match`), answering with the new representation and its ETag.
async fn put_product(
    State(products): State<Products>,
    Path(id): Path<u64>,
    method: Method,
    headers: HeaderMap,
    Json(update): Json<ProductUpdate>,
) -> Response {
    let mut products = products.write().unwrap();
    let Some(product) = products.get_mut(&id) else {
        return not_found(id);
    };
    // The same tag the cache layer gives the GET response: a hash of its body.
    let current = Representation::new().etag(ETag::from_content(&to_json(product)));
    if let Err(stop) = Preconditions::from_request(&method, &headers).check(&current) {
        return stop.into_http_response::<Body>().into_response(); // 412
    }
    product.name = update.name;
    product.price_cents = update.price_cents;
    let body = to_json(product);
    let etag = ETag::from_content(&body);
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, etag.header_value().clone()),
        ],
        body,
    )
        .into_response()
}

/// Who the token says you are. Anonymous requests get the 401 challenge.
async fn me(subject: Option<Extension<Subject>>, scopes: Option<Extension<Scopes>>) -> Response {
    let Some(Extension(subject)) = subject else {
        let problem = common::token_required();
        return Rejections::default()
            .http_response::<Body>(problem)
            .into_response();
    };
    let scopes: Vec<&str> = scopes
        .as_ref()
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    Json(serde_json::json!({ "subject": subject.as_str(), "scopes": scopes })).into_response()
}

fn to_json(product: &Product) -> Vec<u8> {
    serde_json::to_vec(product).expect("a product serializes")
}

fn not_found(id: u64) -> Response {
    let problem =
        Problem::new(StatusCode::NOT_FOUND).with_detail(format!("no product with id {id}"));
    Rejections::default()
        .http_response::<Body>(problem)
        .into_response()
}

/// Installs the OpenTelemetry SDK: spans and metrics to stdout, or over
/// OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. Call before
/// building the `OtelLayer`; shut the providers down at exit.
#[cfg(feature = "otel")]
fn init_telemetry() -> Result<Telemetry, Box<dyn std::error::Error>> {
    use opentelemetry::propagation::TextMapCompositePropagator;
    use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
    use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
    use opentelemetry_sdk::trace::SdkTracerProvider;

    let (tracer, meter) = if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        println!("OpenTelemetry: exporting over OTLP/HTTP");
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()?;
        let metrics = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .build()?;
        (
            SdkTracerProvider::builder()
                .with_batch_exporter(spans)
                .build(),
            SdkMeterProvider::builder()
                .with_reader(PeriodicReader::builder(metrics).build())
                .build(),
        )
    } else {
        println!("OpenTelemetry: printing spans and metrics to stdout");
        let spans = opentelemetry_stdout::SpanExporter::default();
        let metrics = opentelemetry_stdout::MetricExporter::default();
        (
            SdkTracerProvider::builder()
                .with_simple_exporter(spans)
                .build(),
            SdkMeterProvider::builder()
                .with_reader(PeriodicReader::builder(metrics).build())
                .build(),
        )
    };
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    opentelemetry::global::set_tracer_provider(tracer.clone());
    opentelemetry::global::set_meter_provider(meter.clone());
    Ok(Telemetry { tracer, meter })
}

/// The installed providers, flushed at exit.
#[cfg(feature = "otel")]
struct Telemetry {
    tracer: opentelemetry_sdk::trace::SdkTracerProvider,
    meter: opentelemetry_sdk::metrics::SdkMeterProvider,
}

#[cfg(feature = "otel")]
impl Telemetry {
    fn shutdown(self) {
        if let Err(err) = self.tracer.shutdown() {
            eprintln!("tracer provider shutdown: {err}");
        }
        if let Err(err) = self.meter.shutdown() {
            eprintln!("meter provider shutdown: {err}");
        }
    }
}

#[allow(dead_code)] // unused when the example is compiled into its test
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // JSON lines with `LOG_FORMAT=json`; logs over OTLP too with `otel`.
    let _logging = common::logging::init().map_err(|e| e.to_string())?;

    let config = Config::from_env("127.0.0.1:3000")?;
    #[cfg(feature = "otel")]
    let telemetry = init_telemetry()?; // before `app` builds the OtelLayer

    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    println!();
    println!("tower-edge axum example listening on http://{addr}");
    println!();
    common::print_dev_token(&config);
    println!();
    println!("Try:");
    println!("  curl -i http://{addr}/products");
    println!("  curl -i http://{addr}/products -H 'if-none-match: <etag from above>'     # 304");
    println!("  curl -i http://{addr}/me                                   # 401");
    println!("  curl -i http://{addr}/me -H \"authorization: Bearer $TOKEN\"");
    println!(
        "  curl -i -X PUT http://{addr}/products/1 -H \"authorization: Bearer $TOKEN\" \\\n       -H 'content-type: application/json' -H 'if-match: \"stale\"' \\\n       -d '{{\"name\":\"keyboard\",\"price_cents\":3900}}'   # 412"
    );
    println!(
        "  for i in $(seq 100); do curl -s -o /dev/null -w '%{{http_code}} ' http://{addr}/health; done   # 429s"
    );
    println!(
        "  curl -i -X POST http://{addr}/orders -H \"authorization: Bearer $TOKEN\" -H 'idempotency-key: \"order-1\"' \\\n       -H 'content-type: application/json' -d '{{\"product_id\": 1, \"quantity\": 2}}'   # twice: replayed"
    );
    println!();
    println!("Ctrl-C stops the server gracefully.");

    serve(listener, config, common::shutdown_signal()).await?;

    #[cfg(feature = "otel")]
    telemetry.shutdown();
    Ok(())
}
