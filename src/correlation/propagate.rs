//! Client side: stamp outgoing requests with the current correlation ID.

use std::task::{Context, Poll};

use http::{HeaderName, Request};
use tower_layer::Layer;
use tower_service::Service;

use super::{CorrelationId, X_REQUEST_ID};

/// Layer for an outgoing HTTP client (hyper-util's `Client`, or any
/// `tower::Service<http::Request<_>>`) that copies the correlation ID of the
/// request being handled onto every outgoing request, so the handler never
/// passes it by hand.
///
/// The ID comes from [`CorrelationId::current`]: it is set while a
/// [`CorrelationIdLayer`](super::CorrelationIdLayer) polls its inner
/// service, so calls made inside a handler carry it. An outgoing request that
/// already has the header keeps its own value.
///
/// By default it sends the correlation-ID header and nothing else, with or
/// without feature `otel`. With feature `otel` it can also inject the
/// current OpenTelemetry context (`traceparent`, `tracestate`,
/// `baggage`...): ask for it with
/// [`with_global_propagator`](Self::with_global_propagator) (the global
/// text-map propagator) or [`with_propagator`](Self::with_propagator).
/// Inside an [`OtelLayer`](crate::otel::OtelLayer) the current context is
/// the request's server span, so outgoing calls continue its trace. Headers
/// the outgoing request already has are kept.
///
/// ```
/// use http::{Request, Response};
/// use tower::{ServiceBuilder, ServiceExt};
/// use tower_edge::correlation::{CorrelationId, PropagateCorrelationIdLayer, with_correlation_id};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // A stand-in for an HTTP client that echoes the header it was sent.
/// let client = ServiceBuilder::new()
///     .layer(PropagateCorrelationIdLayer::new())
///     .service_fn(|req: Request<()>| async move {
///         Ok::<_, std::convert::Infallible>(Response::new(req.headers()["x-request-id"].clone()))
///     });
///
/// let id: CorrelationId = "req-7".parse().unwrap();
/// let sent = with_correlation_id(id, client.oneshot(Request::new(()))).await.unwrap();
/// assert_eq!(sent.body(), "req-7");
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PropagateCorrelationIdLayer {
    header: HeaderName,
    #[cfg(feature = "otel")]
    propagation: Option<crate::otel::Propagation>,
}

impl Default for PropagateCorrelationIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl PropagateCorrelationIdLayer {
    /// Propagates in `x-request-id`.
    pub fn new() -> Self {
        Self::with_header(X_REQUEST_ID)
    }

    /// Propagates in `header` instead.
    pub fn with_header(header: HeaderName) -> Self {
        Self {
            header,
            #[cfg(feature = "otel")]
            propagation: None,
        }
    }

    /// Also injects the current OpenTelemetry context into outgoing
    /// requests, with the global text-map propagator
    /// (`opentelemetry::global::get_text_map_propagator`). Off by default.
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    pub fn with_global_propagator(mut self) -> Self {
        self.propagation = Some(crate::otel::Propagation::Global);
        self
    }

    /// Also injects the current OpenTelemetry context into outgoing
    /// requests, with `propagator`. Off by default.
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    pub fn with_propagator(
        mut self,
        propagator: impl opentelemetry::propagation::TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        self.propagation = Some(crate::otel::Propagation::explicit(propagator));
        self
    }
}

impl<S> Layer<S> for PropagateCorrelationIdLayer {
    type Service = PropagateCorrelationId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateCorrelationId {
            inner,
            header: self.header.clone(),
            #[cfg(feature = "otel")]
            propagation: self.propagation.clone(),
        }
    }
}

/// Client middleware made by [`PropagateCorrelationIdLayer`].
#[derive(Debug, Clone)]
pub struct PropagateCorrelationId<S> {
    inner: S,
    header: HeaderName,
    #[cfg(feature = "otel")]
    propagation: Option<crate::otel::Propagation>,
}

impl<S> PropagateCorrelationId<S> {
    /// Propagates the current correlation ID around `inner`, configured as [`PropagateCorrelationIdLayer::new`] (the
    /// defaults); use the layer's builder for another configuration.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&PropagateCorrelationIdLayer::new(), inner)
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

impl<S, B> Service<Request<B>> for PropagateCorrelationId<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        if !request.headers().contains_key(&self.header)
            && let Some(id) = CorrelationId::current()
        {
            request
                .headers_mut()
                .insert(self.header.clone(), id.into_header_value());
        }
        #[cfg(feature = "otel")]
        if let Some(propagation) = &self.propagation {
            propagation.inject(&opentelemetry::Context::current(), request.headers_mut());
        }
        self.inner.call(request)
    }
}
