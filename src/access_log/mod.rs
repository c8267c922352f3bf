//! One access-log line per request, as Envoy's access log or nginx's
//! `access_log` write it: what was asked, what was answered, how long it
//! took, and which tower-edge layer decided when one answered itself.
//!
//! [`AccessLogLayer`] emits one `tracing` event per request at INFO level,
//! target `tower_edge::access_log`, message `request completed`, when the
//! response body ends (or is dropped: the client went away), so the
//! duration and the byte count cover the whole body. Fields (OpenTelemetry
//! attribute names where one exists):
//!
//! | field | value |
//! |---|---|
//! | `http.request.method` | the method |
//! | `http.route` | the route template (a `Route` with feature `otel`, axum's `MatchedPath` with feature `axum`), when known; never the raw path |
//! | `http.response.status_code` | the status; absent when the service failed or the request was dropped before the response head |
//! | `duration_ms` | from the request entering this layer to the end of the response body, milliseconds (float) |
//! | `http.response.body.size` | bytes of the body sent (data frames), as counted when the body ended |
//! | `correlation_id` | the [`CorrelationId`] of the request (set by a [`CorrelationIdLayer`](crate::correlation::CorrelationIdLayer) outside) |
//! | `trace_id`, `span_id` | the OpenTelemetry span current when the request entered (feature `otel`, an [`OtelLayer`](crate::otel::OtelLayer) outside): the server span |
//! | `tower_edge.layer`, `tower_edge.reason`, `tower_edge.policy` | the [`Decision`](crate::decision::Decision) on the response: which layer answered (or observed) and why, and the rate-limit policy or overload partition |
//! | `client.address` | the client IP as the rate limiter resolves it (see [`AccessLogLayerBuilder::client_ip_as`]) |
//! | `body.error` | `true` when the response body failed |
//!
//! Every value is a number, a fixed token or a `&str` field, never part of
//! a format string, so any formatter escapes it: a client cannot forge a
//! second line. The event is emitted inside the span that was current when
//! the request entered (the correlation layer's `request` span, with its
//! `correlation_id`, `route` and `subject`; this layer opens that span
//! itself when the correlation layer left it and no OTel layer outside took
//! it, see `CorrelationIdLayerBuilder::span_to_otel`) and, with feature `otel`,
//! with the server span as the current OpenTelemetry context, so a log
//! bridge (`opentelemetry-appender-tracing`) gives the record its trace
//! context.
//!
//! Off unless stacked. Put it inside the correlation and OTel layers (so it
//! sees the ID and the server span) and outside every layer that may answer
//! (so it sees their rejections):
//!
//! ```text
//! correlation -> otel -> access log -> overload -> rate_limit -> jwt_auth -> ...
//! ```
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_edge::access_log::AccessLogLayer;
//! use tower_edge::correlation::CorrelationIdLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(CorrelationIdLayer::new())
//!     .layer(AccessLogLayer::new())
//!     .service_fn(|_req: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("hello")))
//!     });
//! // Logs `request completed` with http.request.method=GET,
//! // http.response.status_code=200, http.response.body.size=5...
//! let response = service.oneshot(Request::new(String::new())).await.unwrap();
//! # let _ = response;
//! # }
//! ```

mod record;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Extensions, HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

pub use record::{AccessLogBody, ResponseFuture};

use crate::config::ConfigError;
use crate::correlation::CorrelationId;

type ClientIpFn = dyn Fn(&HeaderMap, &Extensions) -> Option<IpAddr> + Send + Sync;

struct Shared {
    client_ip: Option<Arc<ClientIpFn>>,
}

/// Builds an [`AccessLogLayer`]; from [`AccessLogLayer::builder`].
#[derive(Default)]
pub struct AccessLogLayerBuilder {
    client_ip: Option<Arc<ClientIpFn>>,
}

impl fmt::Debug for AccessLogLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLogLayerBuilder")
            .field("client_ip", &self.client_ip.is_some())
            .finish()
    }
}

impl AccessLogLayerBuilder {
    /// `client.address` is the client IP as `limiter` finds it: the TCP
    /// peer, or behind its trusted proxies the forwarding header's first
    /// untrusted address (see [`LimitRateLayerBuilder::trusted_proxies`](crate::rate_limit::LimitRateLayerBuilder::trusted_proxies)).
    /// By default (feature `rate-limit`) the TCP peer, as a limiter
    /// without trusted proxies finds it; without the feature, no
    /// `client.address`.
    #[cfg(feature = "rate-limit")]
    pub fn client_ip_as(mut self, limiter: &crate::rate_limit::LimitRateLayer) -> Self {
        let config = limiter.client_ip_config().clone();
        self.client_ip = Some(Arc::new(move |headers, extensions| {
            config.resolve(headers, extensions)
        }));
        self
    }

    /// `client.address` from a function of the request's headers and
    /// extensions instead (your own resolution, or `|_, _| None` for none).
    pub fn client_ip_with(
        mut self,
        resolve: impl Fn(&HeaderMap, &Extensions) -> Option<IpAddr> + Send + Sync + 'static,
    ) -> Self {
        self.client_ip = Some(Arc::new(resolve));
        self
    }

    /// Builds the layer.
    ///
    /// # Errors
    ///
    /// None today; the `Result` keeps the shape of every builder of the
    /// crate, so a check can be added without breaking callers.
    pub fn build(self) -> Result<AccessLogLayer, ConfigError> {
        #[cfg(feature = "rate-limit")]
        let client_ip = self.client_ip.or_else(|| {
            let config = crate::rate_limit::client_ip::ClientIpConfig::default();
            let resolve: Arc<ClientIpFn> =
                Arc::new(move |headers, extensions| config.resolve(headers, extensions));
            Some(resolve)
        });
        #[cfg(not(feature = "rate-limit"))]
        let client_ip = self.client_ip;
        Ok(AccessLogLayer {
            shared: Arc::new(Shared { client_ip }),
        })
    }
}

/// Layer that applies [`AccessLog`]: one access-log line per request. See
/// the [module docs](self).
#[derive(Clone)]
pub struct AccessLogLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for AccessLogLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLogLayer")
            .field("client_ip", &self.shared.client_ip.is_some())
            .finish()
    }
}

impl Default for AccessLogLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl AccessLogLayer {
    /// The default layer: `client.address` is the TCP peer.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder to customise the layer.
    pub fn builder() -> AccessLogLayerBuilder {
        AccessLogLayerBuilder::default()
    }
}

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AccessLog {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Middleware that logs one line per request; made by [`AccessLogLayer`].
#[derive(Clone)]
pub struct AccessLog<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> AccessLog<S> {
    /// Logs requests to `inner`, configured as [`AccessLogLayer::new`].
    pub fn new(inner: S) -> Self {
        Layer::layer(&AccessLogLayer::new(), inner)
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

impl<S: fmt::Debug> fmt::Debug for AccessLog<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLog")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AccessLog<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<AccessLogBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        // No OTel layer outside took the correlation layer's span: open it
        // here, so the lines of the layers inside (and this one) carry it.
        let opened = crate::correlation::span::open_handed_off(&mut request);
        let span = opened.clone().unwrap_or_else(tracing::Span::current);
        let route = record::request_route(request.extensions());
        if let Some(route) = &route {
            // For the lines the handler logs under the `request` span.
            span.record("route", &**route);
        }
        let entry = record::Entry {
            start,
            method: request.method().clone(),
            route,
            correlation_id: request.extensions().get::<CorrelationId>().cloned(),
            client_ip: self
                .shared
                .client_ip
                .as_ref()
                .and_then(|resolve| resolve(request.headers(), request.extensions())),
            span,
            #[cfg(feature = "otel")]
            otel_cx: opentelemetry::Context::current(),
        };
        let future = {
            let _entered = opened.as_ref().map(tracing::Span::enter);
            self.inner.call(request)
        };
        ResponseFuture::new(future, entry, opened.is_some())
    }
}

#[cfg(test)]
mod tests;
