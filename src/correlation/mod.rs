//! Validated correlation (request) IDs: accepted or generated, echoed on
//! every response, a field of the request's tracing span, and carried onto
//! outgoing calls.
//!
//! [`CorrelationIdLayer`] reads the ID from `x-request-id` (configurable, with
//! alternatives such as `x-correlation-id`). A value is accepted only if it
//! passes validation — by default 1 to 128 characters of `[A-Za-z0-9._:-]` —
//! otherwise a fresh UUID v7 replaces it. A rejected value is never reflected
//! on the response and never logged: a client cannot inject text into your
//! logs or headers through it.
//!
//! The final ID is:
//!
//! * set on the request (under the configured header name) and put in the
//!   request extensions as a [`CorrelationId`];
//! * echoed on every response, including rejections of layers inside this
//!   one (put it outermost);
//! * the `correlation_id` field of a `request` span entered for the whole
//!   request, so every log line emitted inside carries it. The span is at
//!   ERROR level, so no *level* filters it out (a span that is filtered out
//!   is not entered, and lines under it would lose the ID). Its target is
//!   `tower_edge::correlation`: a filter that names only your own targets
//!   (`RUST_LOG=my_app=info`) or turns `tower_edge` off disables it too;
//!   add `tower_edge=error` to keep it. With `FmtSpan::NEW`/`CLOSE` span
//!   events, it shows as an ERROR-level span. It declares `route` and
//!   `subject` too, recorded when an inner layer learns them (the OTel
//!   layer or the access log: the route template; the JWT layer: the
//!   token's subject). With feature `otel`, an
//!   [`OtelLayer`](crate::otel::OtelLayer) directly inside opens this span
//!   as a child of its server span, so both are one trace (see
//!   `CorrelationIdLayerBuilder::span_to_otel`);
//! * available as [`CorrelationId::current`] while the request is handled,
//!   which [`PropagateCorrelationIdLayer`] uses to stamp outgoing requests.
//!
//! # Default setup
//!
//! ```
//! use http::{Request, Response};
//! use tower::{Service, ServiceBuilder, ServiceExt};
//! use tower_edge::correlation::{CorrelationId, CorrelationIdLayer};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let mut service = ServiceBuilder::new()
//!     .layer(CorrelationIdLayer::new())
//!     .service_fn(|req: Request<String>| async move {
//!         let id = req.extensions().get::<CorrelationId>().unwrap().clone();
//!         tracing::info!("handling"); // this line carries correlation_id
//!         Ok::<_, std::convert::Infallible>(Response::new(format!("hello {id}")))
//!     });
//!
//! // A valid incoming ID is kept and echoed.
//! let req = Request::builder().header("x-request-id", "abc-123").body(String::new()).unwrap();
//! let res = service.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(res.headers()["x-request-id"], "abc-123");
//!
//! // An invalid one is replaced by a fresh UUID v7, never reflected.
//! let req = Request::builder().header("x-request-id", "<script>").body(String::new()).unwrap();
//! let res = service.ready().await.unwrap().call(req).await.unwrap();
//! assert_eq!(res.headers()["x-request-id"].len(), 36);
//! # }
//! ```
//!
//! # Customised
//!
//! ```
//! use http::{HeaderName, HeaderValue, Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_edge::correlation::{CorrelationId, CorrelationIdLayer, UuidV4};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = CorrelationIdLayer::builder()
//!     .header(HeaderName::from_static("x-correlation-id"))
//!     .also_accept(HeaderName::from_static("x-request-id"))
//!     .max_length(64)
//!     .generator(UuidV4)
//!     .build()
//!     .expect("valid configuration");
//!
//! let service = ServiceBuilder::new()
//!     .layer(layer)
//!     .service_fn(|_req: Request<String>| async {
//!         Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//!     });
//! let req = Request::builder().header("x-request-id", "from-gateway").body(String::new()).unwrap();
//! let res = service.oneshot(req).await.unwrap();
//! assert_eq!(res.headers()["x-correlation-id"], "from-gateway");
//! # }
//! ```
//!
//! A custom acceptance rule replaces the default one:
//!
//! ```
//! use tower_edge::correlation::CorrelationIdLayer;
//!
//! let layer = CorrelationIdLayer::builder()
//!     .validate_with(|id: &str| uuid::Uuid::parse_str(id).is_ok())
//!     .build()
//!     .unwrap();
//! # let _ = layer;
//! ```
//!
//! # Panics and service errors
//!
//! A panicking handler unwinds through this layer, so its response (and
//! the ID on it) is lost. Put tower-http's `CatchPanicLayer` **inside** this
//! layer: it turns the panic into a 500 response, on which this layer then
//! echoes the ID like on any other response.
//!
//! ```text
//! ServiceBuilder::new()
//!     .layer(CorrelationIdLayer::new())   // outermost: the 500 gets the ID
//!     .layer(CatchPanicLayer::new())      // tower_http::catch_panic
//!     .service(app)
//! ```
//!
//! An `Err` from the inner service is passed through unchanged: there is no
//! response to put the ID on. hyper answers a service error by closing the
//! connection without a response (axum's `serve` only accepts infallible
//! services), so turn errors into responses inside this layer (e.g. axum's
//! `HandleErrorLayer`) when clients must see the ID.

mod id;
mod propagate;
pub(crate) mod span;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

pub use id::{
    CorrelationId, InvalidCorrelationId, MakeCorrelationId, UuidV4, UuidV7, WithCorrelationId,
    with_correlation_id,
};
pub use propagate::{PropagateCorrelationId, PropagateCorrelationIdLayer};

use crate::config::ConfigError;

/// The default header: `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The default maximum length of an accepted incoming ID.
pub const DEFAULT_MAX_LENGTH: usize = 128;

type Predicate = dyn Fn(&str) -> bool + Send + Sync;

struct Config {
    header: HeaderName,
    alternatives: Vec<HeaderName>,
    /// The longest accepted incoming ID, whatever the rule.
    max_len: usize,
    /// The user's rule; `None`: `[A-Za-z0-9._:-]{1,max_len}`.
    custom: Option<Arc<Predicate>>,
    generator: Arc<dyn MakeCorrelationId>,
    span: bool,
    #[cfg(feature = "otel")]
    span_to_otel: bool,
}

impl Config {
    /// The incoming ID if one is present and acceptable, else a new one;
    /// and whether the request already carries exactly that ID, once, under
    /// the main header (then it need not be written again).
    fn resolve<B>(&self, request: &Request<B>) -> (CorrelationId, bool) {
        let headers = request.headers();
        let mut main = headers.get_all(&self.header).iter();
        let (incoming, single_main) = match main.next() {
            Some(value) => (Some(value), main.next().is_none()),
            None => (
                self.alternatives.iter().find_map(|name| headers.get(name)),
                false,
            ),
        };
        if let Some(value) = incoming {
            if let Some(id) = self.accept(value) {
                return (id, single_main);
            }
            // Never log the rejected value itself: only its length.
            tracing::debug!(
                rejected_len = value.len(),
                "replacing an invalid incoming correlation id"
            );
        }
        (self.generator.make_correlation_id(), false)
    }

    fn accept(&self, value: &HeaderValue) -> Option<CorrelationId> {
        match &self.custom {
            // The default alphabet is visible ASCII: no second check needed.
            None => id::default_rule(value.as_bytes(), self.max_len)
                .then(|| CorrelationId::from_visible_ascii(value.clone())),
            Some(predicate) => {
                let accepted = value.len() <= self.max_len
                    && std::str::from_utf8(value.as_bytes()).is_ok_and(|s| predicate(s));
                accepted
                    .then(|| CorrelationId::from_header_value(value.clone()).ok())
                    .flatten()
            }
        }
    }
}

/// Builds a [`CorrelationIdLayer`]; from [`CorrelationIdLayer::builder`].
pub struct CorrelationIdLayerBuilder {
    header: HeaderName,
    alternatives: Vec<HeaderName>,
    max_len: usize,
    custom: Option<Arc<Predicate>>,
    generator: Arc<dyn MakeCorrelationId>,
    span: bool,
    #[cfg(feature = "otel")]
    span_to_otel: bool,
}

impl fmt::Debug for CorrelationIdLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorrelationIdLayerBuilder")
            .field("header", &self.header)
            .field("alternatives", &self.alternatives)
            .field("max_length", &self.max_len)
            .field("custom_validation", &self.custom.is_some())
            .field("span", &self.span)
            .finish_non_exhaustive()
    }
}

impl CorrelationIdLayerBuilder {
    /// The header the ID is read from and echoed in (default `x-request-id`).
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    /// Another header an incoming ID is accepted from when the main one is
    /// absent (e.g. `x-correlation-id`); may be called several times, earlier
    /// calls are tried first. The ID is always echoed under
    /// [`header`](Self::header).
    pub fn also_accept(mut self, name: HeaderName) -> Self {
        self.alternatives.push(name);
        self
    }

    /// The longest incoming ID accepted, in bytes (default 128). It bounds a
    /// custom rule ([`validate_with`](Self::validate_with)) too, so an ID
    /// copied into every log line stays small whatever the rule checks.
    pub fn max_length(mut self, max: usize) -> Self {
        self.max_len = max;
        self
    }

    /// Replaces the default rule with `predicate`. It only ever sees values
    /// that are valid header text and at most
    /// [`max_length`](Self::max_length) bytes long; values that are not visible ASCII
    /// (spaces, tabs, control characters, non-ASCII) are refused whatever it
    /// says, so they can never be reflected.
    pub fn validate_with(
        mut self,
        predicate: impl Fn(&str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.custom = Some(Arc::new(predicate));
        self
    }

    /// How new IDs are made (default [`UuidV7`]); closures
    /// `Fn() -> CorrelationId` are accepted.
    pub fn generator(mut self, generator: impl MakeCorrelationId) -> Self {
        self.generator = Arc::new(generator);
        self
    }

    /// Whether to enter a `request` span carrying `correlation_id` around
    /// the inner service (default `true`). Turn it off when another layer
    /// (such as `tower_http::trace`) makes the span and you record the ID
    /// yourself.
    pub fn span(mut self, enabled: bool) -> Self {
        self.span = enabled;
        self
    }

    /// Whether an [`OtelLayer`](crate::otel::OtelLayer) stacked inside
    /// opens the `request` span, as a child of its server span (default
    /// `true`; feature `otel`). Opened here, before the server span exists,
    /// `tracing-opentelemetry` would export it as a trace of its own when
    /// the caller sent a `traceparent`; opened there, the span, the server
    /// span and every log line inside share one trace. Without an OTel
    /// layer, an [`AccessLogLayer`](crate::access_log::AccessLogLayer)
    /// directly inside opens it; without either (or with one that is only
    /// called from a future), this layer opens it itself once the inner
    /// service's `call` has returned, so the lines the inner layers log
    /// synchronously in their `call` miss the span (they still get the ID
    /// from [`CorrelationId::current`] if the formatter reads it). Turn
    /// this off in such a stack.
    #[cfg(feature = "otel")]
    pub fn span_to_otel(mut self, enabled: bool) -> Self {
        self.span_to_otel = enabled;
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// `max_length` of 0, or an alternative header equal to the main one.
    pub fn build(self) -> Result<CorrelationIdLayer, ConfigError> {
        if self.max_len == 0 {
            return Err(ConfigError::new("max_length", "must be at least 1"));
        }
        if self.alternatives.contains(&self.header) {
            return Err(ConfigError::new(
                "also_accept",
                format!("`{}` is already the main header", self.header),
            ));
        }
        Ok(CorrelationIdLayer {
            config: Arc::new(Config {
                header: self.header,
                alternatives: self.alternatives,
                max_len: self.max_len,
                custom: self.custom,
                generator: self.generator,
                span: self.span,
                #[cfg(feature = "otel")]
                span_to_otel: self.span_to_otel,
            }),
        })
    }
}

/// Layer that applies [`SetCorrelationId`]: validated correlation IDs on
/// requests, responses and tracing spans. See the [module docs](self).
#[derive(Clone)]
pub struct CorrelationIdLayer {
    config: Arc<Config>,
}

impl fmt::Debug for CorrelationIdLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorrelationIdLayer")
            .field("header", &self.config.header)
            .finish_non_exhaustive()
    }
}

impl Default for CorrelationIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CorrelationIdLayer {
    /// The default layer: `x-request-id`, the default rule, UUID v7, a span.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder to customise the layer.
    pub fn builder() -> CorrelationIdLayerBuilder {
        CorrelationIdLayerBuilder {
            header: X_REQUEST_ID,
            alternatives: Vec::new(),
            max_len: DEFAULT_MAX_LENGTH,
            custom: None,
            generator: Arc::new(UuidV7),
            span: true,
            #[cfg(feature = "otel")]
            span_to_otel: true,
        }
    }

    /// The header the ID is echoed in.
    pub fn header_name(&self) -> &HeaderName {
        &self.config.header
    }
}

impl<S> Layer<S> for CorrelationIdLayer {
    type Service = SetCorrelationId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SetCorrelationId {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// Middleware that sets a validated [`CorrelationId`] on every request and
/// its response; made by [`CorrelationIdLayer`].
#[derive(Clone)]
pub struct SetCorrelationId<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> SetCorrelationId<S> {
    /// Sets correlation IDs around `inner`, configured as [`CorrelationIdLayer::new`] (the
    /// defaults); use the layer's builder for another configuration.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&CorrelationIdLayer::new(), inner)
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

impl<S: fmt::Debug> fmt::Debug for SetCorrelationId<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetCorrelationId")
            .field("inner", &self.inner)
            .field("header", &self.config.header)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SetCorrelationId<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        let (id, already_set) = config.resolve(&request);
        let headers = request.headers_mut();
        for alternative in &config.alternatives {
            headers.remove(alternative);
        }
        if !already_set {
            headers.insert(config.header.clone(), id.header_value().clone());
        }
        request.extensions_mut().insert(id.clone());

        #[cfg(feature = "otel")]
        if config.span && config.span_to_otel {
            return self.call_deferred(request, id);
        }
        let span = if config.span {
            span::request_span(&id, request.method(), request.uri().path())
        } else {
            Span::none()
        };
        let inner = &mut self.inner;
        let mut id = Some(id);
        let future = {
            let _entered = span.enter();
            id::enter(&mut id, || inner.call(request))
        };
        ResponseFuture {
            inner: future,
            span,
            id,
            header: config.header.clone(),
        }
    }
}

pin_project! {
    /// Response future of [`SetCorrelationId`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        // `None` once the response is out (or while the ID is lent to the
        // thread-local during a poll).
        id: Option<CorrelationId>,
        header: HeaderName,
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.enter();
        let inner = this.inner;
        let poll = id::enter(this.id, || inner.poll(cx));
        let mut response = match poll {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
            Poll::Ready(Ok(response)) => response,
        };
        if let Some(id) = this.id.take() {
            response
                .headers_mut()
                .insert(this.header.clone(), id.into_header_value());
        }
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests;
