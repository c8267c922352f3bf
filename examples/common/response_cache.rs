//! The examples' response cache (feature `response-cache`): `GET
//! /products` and `GET /products/{id}` kept 30 s on the server (in Redis
//! too when `REDIS_URL` is set, shared by every replica), tagged with the
//! groups `products` and `product-<id>`; a `PUT /products/{id}` purges
//! both groups on every replica. With `ORIGIN_DELAY_MS` the slow
//! "database" shows coalescing by hand: concurrent cold requests wait for
//! one handler run (`Cache-Status: ...; collapsed`).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response};

use super::Config;
use tower_edge::ConfigError;

/// The cache layer, outside `cache_headers` (so it stores that layer's
/// `Cache-Control` and `ETag`); no layer without feature `response-cache`.
#[cfg(feature = "response-cache")]
pub fn layer(
    config: &Config,
) -> Result<tower_edge::response_cache::ResponseCacheLayer, ConfigError> {
    let builder = tower_edge::response_cache::ResponseCacheLayer::builder();
    #[cfg(feature = "redis")]
    let builder = match &config.redis_backend {
        Some(backend) => builder
            .redis(backend.clone())
            .redis_key_prefix("tower-edge-example:cache"),
        None => builder,
    };
    #[cfg(not(feature = "redis"))]
    let _ = config;
    let layer = builder.build()?;
    // Hits, misses, stores and bytes held, to the meter provider installed
    // at start.
    #[cfg(feature = "otel")]
    layer
        .handle()
        .register_metrics(opentelemetry::global::meter_provider().as_ref());
    Ok(layer)
}

/// Without feature `response-cache`: no layer.
#[cfg(not(feature = "response-cache"))]
pub fn layer(config: &Config) -> Result<tower::layer::util::Identity, ConfigError> {
    let _ = config;
    Ok(tower::layer::util::Identity::new())
}

/// What the product handlers tell the server cache (a layer, so both
/// examples say it once): on a 2xx `GET /products[/{id}]`,
/// `Edge-Cache-Control: max-age=30` (RFC 9213: 30 s on the server, while
/// browsers keep `cache_headers`' `max-age=60`) and `Cache-Groups`
/// (RFC 9875); on a 2xx `PUT /products/{id}`, `Cache-Group-Invalidation`
/// of both groups.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProductCacheFieldsLayer;

impl<S> tower::Layer<S> for ProductCacheFieldsLayer {
    type Service = ProductCacheFields<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ProductCacheFields { inner }
    }
}

/// See [`ProductCacheFieldsLayer`].
#[derive(Debug, Clone)]
pub struct ProductCacheFields<S> {
    inner: S,
}

/// The groups of a product path: `"products"` and, for one product,
/// `"product-<id>"`.
fn groups(path: &str) -> Option<HeaderValue> {
    let rest = path.strip_prefix("/products")?;
    match rest.strip_prefix('/') {
        None if rest.is_empty() => Some(HeaderValue::from_static("\"products\"")),
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            HeaderValue::from_str(&format!("\"products\", \"product-{id}\"")).ok()
        }
        _ => None,
    }
}

impl<S, B, R> tower::Service<Request<B>> for ProductCacheFields<S>
where
    S: tower::Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<R>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        // Without the response cache nobody reads these fields: none are
        // added, so the targeted field never reaches a client.
        let groups = groups(request.uri().path()).filter(|_| cfg!(feature = "response-cache"));
        let method = request.method().clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            if let Some(groups) = groups.filter(|_| response.status().is_success()) {
                let headers = response.headers_mut();
                if method == Method::GET || method == Method::HEAD {
                    headers.insert("edge-cache-control", HeaderValue::from_static("max-age=30"));
                    headers.insert("cache-groups", groups);
                } else if method == Method::PUT {
                    headers.insert("cache-group-invalidation", groups);
                }
            }
            Ok(response)
        })
    }
}
