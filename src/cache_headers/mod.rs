//! `Cache-Control` policies, ETags and RFC 9110 conditional requests
//! (304 Not Modified, 412 Precondition Failed).
//!
//! [`CacheHeadersLayer`] sits innermost, right around the handler, and on
//! the way out:
//!
//! * **sets `Cache-Control`** from typed [`CacheRule`]s matched by path,
//!   method and status, rendered once when the layer is built. A handler's
//!   own `Cache-Control` wins unless the rule says otherwise. Without a rule:
//!   4xx/5xx get `no-store`, and responses to requests that carried
//!   `Authorization` get `private` (RFC 9111 §3.5). `Vary` is merged, never
//!   duplicated. 401, 403, 407 and 429 always get `no-store`, replacing a
//!   rule's, the error default's or the handler's own `Cache-Control`: they
//!   depend on who asks and when.
//! * **adds a strong `ETag`** to 2xx GET responses whose body has an exact
//!   length up to a cap (1 MiB by default), hashed with xxh3. Streaming
//!   bodies (no exact `size_hint`), over-cap bodies, empty HEAD bodies, 206,
//!   `no-store` responses and responses that already have an `ETag` pass
//!   through unbuffered and untouched. A body that sends more than its
//!   exact size hint promised, past the cap, is a bug of the inner service:
//!   it is answered with a 500 problem. A hint never sizes the buffer past
//!   the cap. With
//!   `Content-Encoding` the tag gets the coding as a suffix (`"…-gzip"`) and
//!   `Vary: Accept-Encoding` is added.
//! * **answers conditional GET and HEAD requests** with 304 or 412 following
//!   RFC 9110 §13.2.2, only when the handler's response is 2xx (never turning
//!   a 401, 404, 429 or 500 into a 304). A 206 is evaluated too, against the
//!   handler's own `ETag` / `Last-Modified` (the preconditions come before
//!   the Range step): a stale `If-Match` gets 412, not a piece of a changed
//!   representation. A 304 has no body and keeps `Cache-Control`,
//!   `Content-Location`, `Date`, `ETag`, `Expires`, `Vary` and `Set-Cookie`
//!   (RFC 9110 §15.4.5), and every field that is no representation
//!   metadata; see [below](#which-fields-a-304-drops).
//!
//! gRPC and gRPC-Web requests pass through untouched: exactly those the
//! [rejection module](crate::rejection::GrpcProtocol) answers the gRPC way
//! (`application/grpc[+subtype]` over HTTP/2, gRPC-Web over any version).
//! A request that only looks like gRPC (`application/grpcfoo`, or
//! `application/grpc` over HTTP/1.1) is handled like any HTTP request.
//!
//! For **unsafe methods** the layer cannot help — the handler has already
//! done the work when it sees the response. Handlers use [`Preconditions`]
//! (an axum extractor with feature `axum`) to check `If-Match` and friends
//! *before* writing, and to skip expensive work on a GET whose client copy
//! is current. The same evaluation function serves both.
//!
//! # Which fields a 304 drops
//!
//! RFC 9110 §15.4.5: a 304's sender SHOULD NOT generate representation
//! metadata other than the fields it lists. The layer drops exactly these,
//! from the handler's 2xx turned into a 304 and from a handler's own 304:
//!
//! * `Content-Type`, `Content-Encoding`, `Content-Language`,
//!   `Content-Length` (RFC 9110 §8.3-§8.6; the 304 has no content for them
//!   to describe; a `Content-Length` could only repeat the 200's, and
//!   dropping it is always allowed);
//! * `Content-Range`, `Transfer-Encoding`, `Trailer` (framing of content the
//!   304 does not have) and `Content-Digest` (RFC 9530);
//! * `Last-Modified` when there is an `ETag` (§15.4.5: it "might be useful
//!   if the response does not have an ETag field").
//!
//! Every other field stays, in particular those that are no representation
//! metadata: CORS (`Access-Control-Allow-Origin`, …), `Link`, `Age`,
//! `Server-Timing`, security headers (`Strict-Transport-Security`,
//! `X-Content-Type-Options`) and custom fields. A browser's CORS check, for
//! one, fails on a 304 without `Access-Control-Allow-Origin`.
//!
//! # Default setup
//!
//! ```
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_edge::cache_headers::CacheHeadersLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut service = ServiceBuilder::new()
//!     .layer(CacheHeadersLayer::new())
//!     .service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::from("{\"id\":1}")))
//!     });
//!
//! let res = service.ready().await.unwrap().call(Request::new(Full::default())).await.unwrap();
//! let etag = res.headers()["etag"].clone();
//!
//! // The client revalidates: 304, no body.
//! let req = Request::builder().header("if-none-match", etag).body(Full::default()).unwrap();
//! let res = service.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
//! # }
//! ```
//!
//! # Customised
//!
//! ```
//! use std::time::Duration;
//! use bytes::Bytes;
//! use http::{header, Request, Response};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_edge::cache_headers::{CacheControl, CacheHeadersLayer, CacheRule, ETag};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = CacheHeadersLayer::builder()
//!     .rule(
//!         CacheRule::new(CacheControl::new().public().max_age(Duration::from_secs(60)))
//!             .path_pattern("/products/*")
//!             .vary(header::ACCEPT_LANGUAGE),
//!     )
//!     .rule(
//!         CacheRule::new(CacheControl::new().public().max_age(Duration::from_secs(31_536_000)).immutable())
//!             .path_prefix("/assets"),
//!     )
//!     .max_etag_body(256 * 1024)
//!     .make_etag(|body: &[u8]| ETag::weak(&format!("{:x}", body.len())).unwrap())
//!     .build()
//!     .expect("valid configuration");
//!
//! let service = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|_req: Request<Full<Bytes>>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(Full::from("{\"id\":42}")))
//!     });
//! let req = Request::get("/products/42").body(Full::default()).unwrap();
//! let res = service.oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["cache-control"], "public, max-age=60");
//! assert_eq!(res.headers()["vary"], "accept-language");
//! assert_eq!(res.headers()["etag"], "W/\"9\"");
//! # }
//! ```
//!
//! # Preconditions in a handler
//!
//! ```
//! use http::{HeaderMap, Method, StatusCode};
//! use tower_edge::cache_headers::{ETag, Preconditions, Representation};
//!
//! fn put_product(method: &Method, headers: &HeaderMap, stored_version: u64) -> StatusCode {
//!     let current = Representation::new()
//!         .etag(ETag::strong(&stored_version.to_string()).unwrap());
//!     if let Err(stop) = Preconditions::from_request(method, headers).check(&current) {
//!         return stop.status(); // send `stop.into_http_response()` in a real handler
//!     }
//!     // ... write, then answer with the new ETag.
//!     StatusCode::NO_CONTENT
//! }
//!
//! let mut headers = HeaderMap::new();
//! headers.insert("if-match", "\"6\"".parse().unwrap());
//! assert_eq!(put_product(&Method::PUT, &headers, 7), StatusCode::PRECONDITION_FAILED);
//! assert_eq!(put_product(&Method::PUT, &headers, 6), StatusCode::NO_CONTENT);
//! ```
//!
//! With axum (feature `axum`), take [`Preconditions`] as an argument;
//! [`ConditionalResponse`] implements `IntoResponse`:
//!
//! ```
//! # #[cfg(feature = "axum")] {
//! use axum::{http::{header, StatusCode}, response::IntoResponse, routing::get, Router};
//! use tower_edge::cache_headers::{
//!     CacheControl, CacheHeadersLayer, CacheRule, ETag, Preconditions, Representation,
//! };
//!
//! async fn current_version() -> u64 { 7 } // a cheap lookup, not the whole product
//!
//! async fn show(pre: Preconditions) -> axum::response::Response {
//!     let etag = ETag::strong(&current_version().await.to_string()).unwrap();
//!     if let Err(stop) = pre.check(&Representation::new().etag(etag.clone())) {
//!         return stop.into_response(); // 304 without touching the database
//!     }
//!     ([(header::ETAG, etag.to_string())], "{\"id\":1}").into_response()
//! }
//!
//! async fn update(pre: Preconditions) -> axum::response::Response {
//!     let etag = ETag::strong(&current_version().await.to_string()).unwrap();
//!     if let Err(stop) = pre.check(&Representation::new().etag(etag)) {
//!         return stop.into_response(); // 412: the client's copy is stale
//!     }
//!     StatusCode::NO_CONTENT.into_response()
//! }
//!
//! let app: Router = Router::new()
//!     .route("/products/{id}", get(show).put(update))
//!     .layer(
//!         CacheHeadersLayer::builder()
//!             .rule(
//!                 CacheRule::new(CacheControl::new().public().max_age(std::time::Duration::from_secs(60)))
//!                     .path_pattern("/products/*"),
//!             )
//!             .build()
//!             .unwrap(),
//!     );
//! # let _ = app;
//! # }
//! ```
//!
//! Put a compression layer *inside* this one (or give pre-compressed bodies
//! a `Content-Encoding`) so the tag is computed on the bytes sent; a
//! compression layer outside would send one tag for several encodings.
//! Trailers of a body buffered for hashing are not forwarded (hyper does not
//! send trailers on HTTP/1.1 bodies of known length anyway).

mod conditional;
mod date;
mod etag;
mod policy;
mod respond;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

pub use conditional::{ConditionalResponse, Evaluation, Preconditions, Representation};
pub use date::{HttpDate, InvalidHttpDate};
pub use etag::{ETag, InvalidETag};
pub use policy::{CacheControl, CacheRule};

use crate::body::ResponseBody;
use crate::config::ConfigError;
use crate::rejection::Rejections;
use policy::Rule;
// The response cache matches its rules like ours and answers 304s with
// the same fields.
#[cfg(feature = "response-cache")]
pub(crate) use conditional::keep_on_304;
#[cfg(feature = "response-cache")]
pub(crate) use policy::PathMatch;
pub use respond::ResponseFuture;

/// The default cap on a body buffered to compute its ETag: 1 MiB.
pub const DEFAULT_MAX_ETAG_BODY: usize = 1024 * 1024;

/// The most rules a layer takes.
const MAX_RULES: usize = 64;

/// Makes the entity tag of a complete response body.
///
/// Implemented for [`Xxh3ETag`] (the default) and any closure
/// `Fn(&[u8]) -> ETag + Send + Sync + 'static`.
pub trait MakeETag: Send + Sync + 'static {
    /// The tag for `body`.
    fn make_etag(&self, body: &[u8]) -> ETag;
}

impl<F> MakeETag for F
where
    F: Fn(&[u8]) -> ETag + Send + Sync + 'static,
{
    fn make_etag(&self, body: &[u8]) -> ETag {
        self(body)
    }
}

/// The default [`MakeETag`]: a strong tag of the body's 64-bit xxh3 hash
/// in hex, the same as [`ETag::from_content`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Xxh3ETag;

impl MakeETag for Xxh3ETag {
    fn make_etag(&self, body: &[u8]) -> ETag {
        ETag::from_content(body)
    }
}

struct Config {
    rules: Vec<Rule>,
    error_value: HeaderValue,
    authorized_value: HeaderValue,
    etag: bool,
    max_etag_body: u64,
    make_etag: Arc<dyn MakeETag>,
    conditional: bool,
    rejections: Rejections,
}

/// Builds a [`CacheHeadersLayer`]; from [`CacheHeadersLayer::builder`].
pub struct CacheHeadersLayerBuilder {
    rules: Vec<CacheRule>,
    error_cache_control: CacheControl,
    authorized_cache_control: CacheControl,
    etag: bool,
    max_etag_body: usize,
    make_etag: Arc<dyn MakeETag>,
    conditional: bool,
    rejections: Rejections,
}

impl fmt::Debug for CacheHeadersLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHeadersLayerBuilder")
            .field("rules", &self.rules)
            .field("error_cache_control", &self.error_cache_control)
            .field("authorized_cache_control", &self.authorized_cache_control)
            .field("etag", &self.etag)
            .field("max_etag_body", &self.max_etag_body)
            .field("conditional", &self.conditional)
            .finish_non_exhaustive()
    }
}

impl CacheHeadersLayerBuilder {
    /// Adds a rule; rules are tried in the order added, the first match
    /// wins (at most 64).
    pub fn rule(mut self, rule: CacheRule) -> Self {
        self.rules.push(rule);
        self
    }

    /// `Cache-Control` for 4xx and 5xx responses that match no rule and
    /// have none of their own (default `no-store`). 401, 403, 407 and 429
    /// get `no-store` whatever this says.
    pub fn error_cache_control(mut self, cache_control: CacheControl) -> Self {
        self.error_cache_control = cache_control;
        self
    }

    /// `Cache-Control` for responses to requests carrying `Authorization`
    /// that match no rule and have none of their own (default `private`,
    /// RFC 9111 §3.5). Rules without `public`/`private` get these
    /// directives added for such requests.
    pub fn authorized_cache_control(mut self, cache_control: CacheControl) -> Self {
        self.authorized_cache_control = cache_control;
        self
    }

    /// Whether to generate ETags (default `true`).
    pub fn etag(mut self, enabled: bool) -> Self {
        self.etag = enabled;
        self
    }

    /// The largest body (exact length) buffered to compute an ETag
    /// (default [`DEFAULT_MAX_ETAG_BODY`], 1 MiB). Larger bodies pass through
    /// untagged.
    pub fn max_etag_body(mut self, bytes: usize) -> Self {
        self.max_etag_body = bytes;
        self
    }

    /// How ETags are computed (default [`Xxh3ETag`]).
    pub fn make_etag(mut self, make: impl MakeETag) -> Self {
        self.make_etag = Arc::new(make);
        self
    }

    /// Whether to answer conditional GET/HEAD requests with 304/412
    /// (default `true`).
    pub fn conditional(mut self, enabled: bool) -> Self {
        self.conditional = enabled;
        self
    }

    /// How 412 responses (and the 500 of a failing body) are rendered.
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.rejections = rejections;
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// More than 64 rules, a rule with contradictory directives or a bad
    /// path, contradictory default policies, or `max_etag_body` of 0.
    pub fn build(self) -> Result<CacheHeadersLayer, ConfigError> {
        if self.rules.len() > MAX_RULES {
            return Err(ConfigError::new("rules", "at most 64 rules"));
        }
        if self.max_etag_body == 0 {
            return Err(ConfigError::new(
                "max_etag_body",
                "must be at least 1 (use `.etag(false)` to turn ETags off)",
            ));
        }
        let error_value = self.error_cache_control.render("error_cache_control")?;
        let authorized_value = self
            .authorized_cache_control
            .render("authorized_cache_control")?;
        let rules = self
            .rules
            .into_iter()
            .map(|rule| rule.compile(&self.authorized_cache_control))
            .collect::<Result<_, _>>()?;
        Ok(CacheHeadersLayer {
            config: Arc::new(Config {
                rules,
                error_value,
                authorized_value,
                etag: self.etag,
                max_etag_body: self.max_etag_body as u64,
                make_etag: self.make_etag,
                conditional: self.conditional,
                rejections: self.rejections,
            }),
        })
    }
}

/// Layer that applies [`CacheHeaders`]: `Cache-Control` policies, ETags and
/// conditional requests. See the [module docs](self).
#[derive(Clone)]
pub struct CacheHeadersLayer {
    config: Arc<Config>,
}

impl fmt::Debug for CacheHeadersLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHeadersLayer")
            .field("rules", &self.config.rules.len())
            .field("etag", &self.config.etag)
            .field("max_etag_body", &self.config.max_etag_body)
            .finish_non_exhaustive()
    }
}

impl Default for CacheHeadersLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CacheHeadersLayer {
    /// The default layer: no rules, `no-store` on errors, `private` for
    /// authorized requests, xxh3 ETags up to 1 MiB, conditional requests on.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder to customise the layer.
    pub fn builder() -> CacheHeadersLayerBuilder {
        CacheHeadersLayerBuilder {
            rules: Vec::new(),
            error_cache_control: CacheControl::new().no_store(),
            authorized_cache_control: CacheControl::new().private(),
            etag: true,
            max_etag_body: DEFAULT_MAX_ETAG_BODY,
            make_etag: Arc::new(Xxh3ETag),
            conditional: true,
            rejections: Rejections::default(),
        }
    }
}

impl<S> Layer<S> for CacheHeadersLayer {
    type Service = CacheHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CacheHeaders {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// Middleware that sets cache headers, ETags and answers conditional
/// requests; made by [`CacheHeadersLayer`].
#[derive(Clone)]
pub struct CacheHeaders<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> CacheHeaders<S> {
    /// Sets cache headers around `inner`, configured as [`CacheHeadersLayer::new`] (the
    /// defaults); use the layer's builder for another configuration.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&CacheHeadersLayer::new(), inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for CacheHeaders<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheHeaders")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// What the response future needs to know about the request.
struct RequestCtx {
    preconditions: Preconditions,
    /// GET or HEAD.
    safe: bool,
    head: bool,
    authorized: bool,
    /// Bit i: rule i matches the request's method and path.
    rules: u64,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CacheHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let method = request.method();
        let safe = matches!(*method, Method::GET | Method::HEAD);
        // The cache-headers layer leaves gRPC untouched (`scan` answers
        // `None` for what the rejection module calls gRPC: the gRPC over
        // HTTP/2 protocol spec carries the status in trailers).
        let ctx = Preconditions::scan(
            method,
            request.version(),
            request.headers(),
            config.conditional && safe,
        )
        .map(|(preconditions, authorized)| {
            let path = request.uri().path();
            let mut rules = 0u64;
            for (i, rule) in config.rules.iter().enumerate() {
                if rule.matches_request(method, path) {
                    rules |= 1 << i;
                }
            }
            RequestCtx {
                preconditions,
                safe,
                head: *method == Method::HEAD,
                authorized,
                rules,
            }
        });
        ResponseFuture::new(self.inner.call(request), ctx, Arc::clone(&self.config))
    }
}
