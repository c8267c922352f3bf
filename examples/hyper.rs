//! tower-edge on plain hyper 1 + hyper-util, without a framework.
//!
//! ```text
//! cargo run --example hyper
//! ```
//!
//! Shows the two things a framework otherwise does for you: inserting the
//! peer address into each request's extensions (the rate limiter keys on
//! it, see [`PeerAddr`]), and running a `tower` stack as a hyper service
//! (with hyper-util, in [`common::serve_http`], shared with the axum
//! example).
//!
//! Routes: `GET /health`, `GET /products`, `GET /products/{id}` (public,
//! cacheable, ETag and 304), `PUT /products/{id}` (scope `products:write`,
//! `If-Match` → 412), `GET /me` (needs a token), `POST /orders` (scope
//! `orders:write`, `Idempotency-Key` required, a retry replays the first
//! 201; see `common::orders`), `GET /orders/{id}`.
//!
//! Connections, against slow clients ("slowloris"): at most
//! `MAX_CONNECTIONS` (default 512) are open at once, further clients wait
//! in the listen backlog until one closes; and a client has
//! `HEADER_READ_TIMEOUT_MS` (default 10 000) to send each request head (and
//! the first bytes of its connection), else the server closes the
//! connection, as it does a kept-alive connection silent that long.
//! Without them a few hundred clients sending half a request head each
//! hold as many connections, and file descriptors, for ever: hyper
//! enforces no header read timeout without a timer. An HTTP/2 (h2c)
//! connection gets the timeout for its preface only, then PINGs; see
//! `common` for why, and why these defaults.
//!
//! Environment (all optional): `BIND` (default `127.0.0.1:3001`),
//! `JWT_SECRET`, `JWT_ISSUER`, `JWT_AUDIENCE`, `RATE_LIMIT`,
//! `TRUSTED_PROXIES`, `MAX_CONNECTIONS`, `HEADER_READ_TIMEOUT_MS`,
//! `RUST_LOG`.

#[path = "common/mod.rs"]
pub mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_edge::access_log::AccessLogLayer;
use tower_edge::cache_headers::{
    CacheControl, CacheHeadersLayer, CacheRule, ETag, Preconditions, Representation,
};
use tower_edge::correlation::CorrelationIdLayer;
use tower_edge::jwt_auth::{AuthMode, Scopes};
use tower_edge::rate_limit::PeerAddr;
use tower_edge::rejection::{Problem, Rejections};
use tower_edge::{ConfigError, Subject};

use common::Config;

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;
/// The request body behind the idempotency layer (buffered when it applies).
type AppBody = tower_edge::idempotency::RequestBody<Incoming>;

/// The in-memory "database": id → (name, price in cents). The lock is
/// never held across an `.await`.
type Products = Arc<RwLock<BTreeMap<u64, (String, u64)>>>;

fn seed() -> Products {
    let products = [(1, "keyboard", 4_900), (2, "mouse", 2_500)]
        .map(|(id, name, price_cents)| (id, (name.to_owned(), price_cents)));
    Arc::new(RwLock::new(BTreeMap::from(products)))
}

fn product(id: u64, (name, price_cents): &(String, u64)) -> serde_json::Value {
    serde_json::json!({ "id": id, "name": name, "price_cents": price_cents })
}

/// The largest request body `PUT` reads.
const MAX_BODY: usize = 16 * 1024;

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(value.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// A problem+json response, in the same format as the layers' rejections.
fn problem(problem: Problem) -> Response<Body> {
    Rejections::default()
        .http_response::<Full<Bytes>>(problem)
        .map(|body| body.map_err(|never| match never {}).boxed_unsync())
}

/// The application's router: a plain async function.
async fn route(
    products: Products,
    orders: common::orders::Orders,
    request: Request<AppBody>,
) -> Result<Response<Body>, Infallible> {
    let path = request.uri().path().to_owned();
    let id = path
        .strip_prefix("/products/")
        .map(|id| id.parse::<u64>().ok());
    Ok(match (request.method().clone(), path.as_str(), id) {
        (Method::PUT, _, Some(Some(id))) => put_product(&products, id, request).await,
        (Method::POST, "/orders", _) => create_order(&orders, request).await,
        (Method::GET | Method::HEAD, p, _) if p.starts_with("/orders/") => {
            match orders.get(&p["/orders/".len()..]) {
                Some(order) => json_bytes(StatusCode::OK, order),
                None => problem(Problem::new(StatusCode::NOT_FOUND)),
            }
        }
        (Method::GET | Method::HEAD, "/products", _) => {
            // The cache layer hashes these bodies into ETags and answers 304.
            let all = products.read().unwrap();
            json(
                StatusCode::OK,
                all.iter().map(|(id, p)| product(*id, p)).collect(),
            )
        }
        (Method::GET | Method::HEAD, _, Some(id)) => {
            match id.and_then(|id| products.read().unwrap().get(&id).map(|p| product(id, p))) {
                Some(found) => json(StatusCode::OK, found),
                None => problem(Problem::new(StatusCode::NOT_FOUND).with_detail("no such product")),
            }
        }
        (Method::GET | Method::HEAD, "/health", _) => {
            json(StatusCode::OK, serde_json::json!({ "status": "ok" }))
        }
        (Method::GET | Method::HEAD, "/me", _) => me(&request),
        (_, "/health" | "/me" | "/products", _) | (_, _, Some(_)) => {
            problem(Problem::new(StatusCode::METHOD_NOT_ALLOWED).with_header(
                header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD, PUT"),
            ))
        }
        _ => problem(Problem::new(StatusCode::NOT_FOUND)),
    })
}

/// `PUT /products/{id}`: needs scope `products:write`; with `If-Match`, only
/// when the client's copy is the current one (else 412).
async fn put_product(products: &Products, id: u64, request: Request<AppBody>) -> Response<Body> {
    if request.extensions().get::<Subject>().is_none() {
        return problem(common::token_required());
    }
    let can_write = request
        .extensions()
        .get::<Scopes>()
        .is_some_and(|scopes| scopes.contains("products:write"));
    if !can_write {
        return problem(
            Problem::new(StatusCode::FORBIDDEN)
                .with_detail("the token lacks scope `products:write`")
                .with_header(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static(
                        "Bearer realm=\"tower-edge-example\", error=\"insufficient_scope\", scope=\"products:write\"",
                    ),
                ),
        );
    }
    let preconditions = Preconditions::from_request(request.method(), request.headers());
    // Read the (bounded) body before taking the lock.
    let body = match http_body_util::Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => {
            return problem(
                Problem::new(StatusCode::PAYLOAD_TOO_LARGE).with_detail("at most 16 KiB"),
            );
        }
    };
    #[derive(serde::Deserialize)]
    struct Update {
        name: String,
        price_cents: u64,
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(update) => update,
        Err(err) => {
            return problem(Problem::new(StatusCode::BAD_REQUEST).with_detail(err.to_string()));
        }
    };
    let mut all = products.write().unwrap();
    let Some(current) = all.get_mut(&id) else {
        return problem(Problem::new(StatusCode::NOT_FOUND).with_detail("no such product"));
    };
    // The same tag the cache layer gives the GET response: a hash of its body.
    let etag = ETag::from_content(product(id, current).to_string().as_bytes());
    if let Err(stop) = preconditions.check(&Representation::new().etag(etag)) {
        return stop
            .into_http_response::<Full<Bytes>>()
            .map(|body| body.map_err(|never| match never {}).boxed_unsync()); // 412
    }
    *current = (update.name, update.price_cents);
    let updated = product(id, current);
    let mut response = json(StatusCode::OK, updated.clone());
    response.headers_mut().insert(
        header::ETAG,
        ETag::from_content(updated.to_string().as_bytes())
            .header_value()
            .clone(),
    );
    response
}

/// `POST /orders`: needs scope `orders:write` (the idempotency layer in
/// front requires the `Idempotency-Key`); 201 with the order and its
/// `Location` (see `common::orders`).
async fn create_order(
    orders: &common::orders::Orders,
    request: Request<AppBody>,
) -> Response<Body> {
    let can_order = request
        .extensions()
        .get::<Scopes>()
        .is_some_and(|scopes| scopes.contains(common::orders::SCOPE));
    if request.extensions().get::<Subject>().is_none() {
        return problem(common::token_required());
    }
    if !can_order {
        return problem(
            Problem::new(StatusCode::FORBIDDEN)
                .with_detail("the token lacks scope `orders:write`")
                .with_header(
                    header::WWW_AUTHENTICATE,
                    http::HeaderValue::from_static(
                        "Bearer realm=\"tower-edge-example\", error=\"insufficient_scope\", scope=\"orders:write\"",
                    ),
                ),
        );
    }
    let body = match http_body_util::Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(_) => return problem(Problem::new(StatusCode::PAYLOAD_TOO_LARGE)),
    };
    match orders.create(&body) {
        Ok((location, order)) => {
            let mut response = json_bytes(StatusCode::CREATED, order);
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(rejected) => problem(*rejected),
    }
}

/// A JSON response of ready-made bytes.
fn json_bytes(status: StatusCode, body: Bytes) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body)
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Who the token says you are; the JWT layer (optional mode) put the
/// subject and scopes in the extensions, or nothing for anonymous requests.
fn me(request: &Request<AppBody>) -> Response<Body> {
    let Some(subject) = request.extensions().get::<Subject>() else {
        return problem(common::token_required());
    };
    let scopes: Vec<&str> = request
        .extensions()
        .get::<Scopes>()
        .map(|s| s.iter().collect())
        .unwrap_or_default();
    json(
        StatusCode::OK,
        serde_json::json!({ "subject": subject.as_str(), "scopes": scopes }),
    )
}

/// The application as a tower service: the tower-edge stack around
/// [`route`], outermost first. The rate limiters read the client address
/// from the [`PeerAddr`] that [`serve`] inserts. (`use<>`: the service
/// borrows nothing from `config`, so each connection's task can own it.)
pub fn app(
    config: &Config,
) -> Result<
    impl Service<
        Request<Incoming>,
        Response = Response<
            impl http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static + use<>,
        >,
        Error = Infallible,
        Future = impl Send + use<>,
    >
    + Clone
    + Send
    + 'static
    + use<>,
    ConfigError,
> {
    let products = seed();
    let orders = common::orders::Orders::default();
    let flood_guard = common::flood_guard(config).build()?;
    Ok(ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        // One line per request, with the client IP the flood guard keys by.
        .layer(
            AccessLogLayer::builder()
                .client_ip_as(&flood_guard)
                .build()?,
        )
        .layer(common::overload::global_shedding(config)?)
        .layer(flood_guard)
        .layer(common::auth_layer(config, AuthMode::Optional)?)
        .layer(common::per_client(config).build()?)
        // The peer is the `PeerAddr` that `serve` inserts.
        .layer(common::overload::per_client(config, |_| None)?)
        .layer(common::orders::idempotency(config, &[])?.build()?)
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
        .option_layer(common::origin_delay(config))
        .service_fn(move |request| route(products.clone(), orders.clone(), request)))
}

/// Accepts connections on `listener` until `shutdown`, then drains them,
/// with the connection limits of [`common::serve_http`].
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
    let service_for = |peer| {
        // Each request learns the TCP peer through its extensions.
        app.clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            })
    };
    common::serve_http(listener, &config, service_for, shutdown).await;
    Ok(())
}

#[allow(dead_code)] // unused when the example is compiled into its test
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // JSON lines with `LOG_FORMAT=json`; logs over OTLP too with `otel`.
    let _logging = common::logging::init().map_err(|e| e.to_string())?;
    let config = Config::from_env("127.0.0.1:3001")?;
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    println!();
    println!("tower-edge hyper example listening on http://{addr}");
    println!();
    common::print_dev_token(&config);
    println!();
    println!("Try:");
    println!("  curl -i http://{addr}/products");
    println!("  curl -i http://{addr}/products -H 'if-none-match: <etag from above>'     # 304");
    println!("  curl -i http://{addr}/me                                   # 401");
    println!("  curl -i http://{addr}/me -H \"authorization: Bearer $TOKEN\"");
    println!(
        "  curl -i -X PUT http://{addr}/products/1 -H \"authorization: Bearer $TOKEN\" -H 'if-match: \"stale\"' -d '{{\"name\":\"k\",\"price_cents\":1}}'   # 412"
    );
    println!();
    println!("Ctrl-C stops the server gracefully.");
    serve(listener, config, common::shutdown_signal()).await?;
    Ok(())
}
