//! [`OtelLayer`]: the server span and metrics of every request.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::{Request, Response};
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Link, Span as _, SpanBuilder, SpanKind, TraceContextExt, Tracer, TracerProvider,
};
use opentelemetry::{Context as OtelContext, KeyValue};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

use super::metrics::{EdgeMetrics, HttpInstruments, scope};
use super::propagation::Propagation;
use super::record::{ActiveRequest, Instruments, OtelBody, ResponseFuture, State};
use super::route::{self, MakeRoute, RequestHead};
use super::semconv::{self, *};
use crate::config::ConfigError;
use crate::correlation::CorrelationId;
use crate::correlation::span::open_handed_off;
use crate::rejection::is_grpc;

/// What the [`OtelLayer`] does with the trace context a request brings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum IncomingTrace {
    /// Continue the caller's trace: the server span is a child of the
    /// `traceparent` span, `tracestate` and `baggage` are kept (default).
    /// Right behind your own gateway or between your own services.
    #[default]
    Continue,
    /// Start a new trace and ignore `traceparent`, `tracestate` and
    /// `baggage`: for a trust boundary, where callers must not choose your
    /// trace ids, sampling decisions or baggage.
    Restart,
    /// Like [`Restart`](Self::Restart), but a valid incoming span context is
    /// kept as a *link* of the server span, so the caller's trace can still
    /// be found. Baggage is dropped.
    RestartWithLink,
}

struct Shared {
    tracer: BoxedTracer,
    propagation: Propagation,
    incoming: IncomingTrace,
    route_hook: Option<Box<dyn MakeRoute>>,
    instruments: Arc<Instruments>,
    default_scheme: &'static str,
    correlation_id: bool,
}

impl Shared {
    fn parent_context(&self, headers: &http::HeaderMap) -> (OtelContext, Option<Vec<Link>>) {
        match self.incoming {
            IncomingTrace::Continue => (self.propagation.extract(headers, true), None),
            // Nothing is extracted: the propagator never sees the headers.
            IncomingTrace::Restart => (OtelContext::new(), None),
            IncomingTrace::RestartWithLink => {
                // Only the span context is wanted: baggage is hidden, so the
                // propagator neither parses nor logs it.
                let incoming = self.propagation.extract(headers, false);
                let remote = incoming.span().span_context().clone();
                let links = remote.is_valid().then(|| vec![Link::with_context(remote)]);
                (OtelContext::new(), links)
            }
        }
    }
}

/// Builds an [`OtelLayer`]; from [`OtelLayer::builder`].
pub struct OtelLayerBuilder {
    tracer: Option<BoxedTracer>,
    meter: Option<Meter>,
    propagation: Propagation,
    incoming: IncomingTrace,
    route_hook: Option<Box<dyn MakeRoute>>,
    default_scheme: http::uri::Scheme,
    correlation_id: bool,
}

impl fmt::Debug for OtelLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelLayerBuilder")
            .field("explicit_tracer", &self.tracer.is_some())
            .field("explicit_meter", &self.meter.is_some())
            .field("propagation", &self.propagation)
            .field("incoming_trace", &self.incoming)
            .field("route_hook", &self.route_hook.is_some())
            .field("default_url_scheme", &self.default_scheme)
            .field("correlation_id_attribute", &self.correlation_id)
            .finish()
    }
}

impl OtelLayerBuilder {
    /// Spans go to a tracer of `provider` (default: the global tracer
    /// provider, read when the layer is built).
    pub fn tracer_provider<P>(mut self, provider: &P) -> Self
    where
        P: TracerProvider,
        P::Tracer: Send + Sync + 'static,
        <P::Tracer as Tracer>::Span: Send + Sync + 'static,
    {
        let tracer = provider.tracer_with_scope(scope());
        self.tracer = Some(BoxedTracer::new(Box::new(tracer)));
        self
    }

    /// Metrics go to a meter of `provider` (default: the global meter
    /// provider, read when the layer is built).
    pub fn meter_provider<P: MeterProvider + ?Sized>(mut self, provider: &P) -> Self {
        self.meter = Some(provider.meter_with_scope(scope()));
        self
    }

    /// Reads the incoming context with `propagator` instead of the global one
    /// (`opentelemetry::global::get_text_map_propagator`, looked up on every
    /// request).
    pub fn propagator(
        mut self,
        propagator: impl TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        self.propagation = Propagation::explicit(propagator);
        self
    }

    /// What to do with the incoming trace context (default
    /// [`IncomingTrace::Continue`]).
    pub fn incoming_trace(mut self, incoming: IncomingTrace) -> Self {
        self.incoming = incoming;
        self
    }

    /// Names routes that neither a [`Route`](super::Route) extension nor axum's
    /// `MatchedPath` names (see [`Route`](super::Route) for the order).
    pub fn route_with(mut self, hook: impl MakeRoute) -> Self {
        self.route_hook = Some(Box::new(hook));
        self
    }

    /// `url.scheme` of requests whose target has no scheme, which is every
    /// HTTP/1.1 request (default `http`). Set `https` when the server (not a
    /// proxy in front of it) terminates TLS.
    pub fn default_url_scheme(mut self, scheme: http::uri::Scheme) -> Self {
        self.default_scheme = scheme;
        self
    }

    /// Whether the server span gets a `correlation_id` attribute from the
    /// [`CorrelationId`] in the request extensions (default `true`).
    pub fn correlation_id_attribute(mut self, enabled: bool) -> Self {
        self.correlation_id = enabled;
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// `default_url_scheme` other than `http` or `https`.
    pub fn build(self) -> Result<OtelLayer, ConfigError> {
        let default_scheme = if self.default_scheme == http::uri::Scheme::HTTP {
            "http"
        } else if self.default_scheme == http::uri::Scheme::HTTPS {
            "https"
        } else {
            return Err(ConfigError::new(
                "default_url_scheme",
                format!("must be http or https, not `{}`", self.default_scheme),
            ));
        };
        let tracer = self
            .tracer
            .unwrap_or_else(|| global::tracer_with_scope(scope()));
        let meter = self
            .meter
            .unwrap_or_else(|| global::meter_with_scope(scope()));
        Ok(OtelLayer {
            shared: Arc::new(Shared {
                tracer,
                propagation: self.propagation,
                incoming: self.incoming,
                route_hook: self.route_hook,
                instruments: Arc::new(Instruments {
                    http: HttpInstruments::new(&meter),
                    edge: EdgeMetrics::from_meter(&meter),
                }),
                default_scheme,
                correlation_id: self.correlation_id,
            }),
        })
    }
}

/// Layer that applies [`TraceAndMeter`]: W3C trace-context extraction, an
/// HTTP (or gRPC) server span and the HTTP server metrics for every
/// request. See the [module docs](super).
#[derive(Clone)]
pub struct OtelLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for OtelLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelLayer")
            .field("propagation", &self.shared.propagation)
            .field("incoming_trace", &self.shared.incoming)
            .finish_non_exhaustive()
    }
}

impl Default for OtelLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl OtelLayer {
    /// The default layer: the global tracer and meter providers (read now,
    /// so install them first), the global propagator, incoming traces
    /// continued.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .expect("the default configuration is valid")
    }

    /// A builder to customise the layer.
    pub fn builder() -> OtelLayerBuilder {
        OtelLayerBuilder {
            tracer: None,
            meter: None,
            propagation: Propagation::Global,
            incoming: IncomingTrace::Continue,
            route_hook: None,
            default_scheme: http::uri::Scheme::HTTP,
            correlation_id: true,
        }
    }

    /// The counters this layer moves, to hand to other layers (Redis store,
    /// JWKS) so that all of tower-edge's metrics share one meter.
    pub fn metrics(&self) -> &EdgeMetrics {
        &self.shared.instruments.edge
    }
}

impl<S> Layer<S> for OtelLayer {
    type Service = TraceAndMeter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TraceAndMeter {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Middleware that traces and meters each request: a server span in the
/// extracted W3C trace context and the HTTP server metrics; made by
/// [`OtelLayer`].
#[derive(Clone)]
pub struct TraceAndMeter<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> TraceAndMeter<S> {
    /// Traces and meters requests around `inner`, configured as [`OtelLayer::new`] (the
    /// defaults); use the layer's builder for another configuration.
    pub fn new(inner: S) -> Self {
        tower_layer::Layer::layer(&OtelLayer::new(), inner)
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

impl<S: fmt::Debug> fmt::Debug for TraceAndMeter<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TraceAndMeter")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TraceAndMeter<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<OtelBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let shared = &*self.shared;
        let (method, span_method) = semconv::method(request.method());
        let scheme = match request.uri().scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => "https",
            Some(s) if s.eq_ignore_ascii_case("http") => "http",
            _ => shared.default_scheme,
        };
        let grpc = is_grpc(request.version(), request.headers());
        let route = route::request_route(&RequestHead::of(&request), shared.route_hook.as_deref());
        let (parent, links) = shared.parent_context(request.headers());

        let path = request.uri().path();
        // A route template (not the literal path) comes from the server's
        // own routing: it names the span even when the client says gRPC.
        // Except a catch-all (`/pkg.Greeter/{*rest}`, how a gRPC service is
        // mounted in axum): it says nothing about the method, so the strict
        // gRPC name (with `_OTHER` for unknown methods) stays.
        let template = route.as_ref().is_some_and(|route| {
            route.as_str() != path && !semconv::is_service_catch_all(route.as_str(), path)
        });
        let grpc_method = if grpc && !template {
            semconv::grpc_method(path)
        } else {
            None
        };
        let name: Cow<'static, str> = match (grpc_method, &route) {
            (Some((service, method)), _) => format!("{service}/{method}").into(),
            (None, Some(route)) => format!("{span_method} {route}").into(),
            (None, None) => span_method.into(),
        };
        // What a sampler may look at goes in at creation (HTTP semconv).
        let mut attributes = Vec::with_capacity(4);
        attributes.push(KeyValue::new(HTTP_REQUEST_METHOD, method));
        attributes.push(KeyValue::new(URL_PATH, path.to_owned()));
        attributes.push(KeyValue::new(URL_SCHEME, scheme));
        if let Some(route) = &route {
            attributes.push(KeyValue::new(HTTP_ROUTE, route.to_value()));
        }
        let mut builder = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Server)
            .with_attributes(attributes);
        if let Some(links) = links {
            builder = builder.with_links(links);
        }
        let mut span = shared.tracer.build_with_context(builder, &parent);
        let recording = span.is_recording();
        if recording {
            let service = grpc_method.map(|(service, _)| service);
            span.set_attributes(recorded_attributes(&request, shared, method, service));
        }
        let rpc_method = grpc_method.map(|(_, method)| recording.then(|| method.to_owned()));
        let otel_cx = parent.with_span(span);

        shared.instruments.http.active.add(
            1,
            &[
                KeyValue::new(HTTP_REQUEST_METHOD, method),
                KeyValue::new(URL_SCHEME, scheme),
            ],
        );
        let active = ActiveRequest {
            instruments: Arc::clone(&shared.instruments),
            method,
            scheme,
        };
        let protocol = semconv::protocol_version(request.version());

        // The layers inside (the access log) see the route found here.
        if let Some(route) = &route
            && request.extensions().get::<route::Route>().is_none()
        {
            request.extensions_mut().insert(route.clone());
        }
        let future;
        let request_span;
        {
            let _attached = otel_cx.clone().attach();
            // Opened while the server span is the current context:
            // tracing-opentelemetry makes it a child of the server span.
            request_span = correlation_request_span(&mut request, route.as_ref());
            let _entered = request_span.enter();
            future = self.inner.call(request);
        }
        ResponseFuture::new(
            future,
            State {
                otel_cx,
                start,
                route,
                span_method,
                grpc,
                rpc_method,
                protocol,
                active,
                request_span,
            },
        )
    }
}

/// The correlation layer's `request` span, when a
/// [`CorrelationIdLayer`](crate::correlation::CorrelationIdLayer) outside
/// left it to this layer (see its `span_to_otel`); else a disabled span.
fn correlation_request_span<B>(request: &mut Request<B>, route: Option<&route::Route>) -> Span {
    let span = open_handed_off(request).unwrap_or_else(Span::none);
    if let Some(route) = route {
        span.record("route", route.as_str());
    }
    span
}

/// Attributes only worth their allocations when the span records.
fn recorded_attributes<B>(
    request: &Request<B>,
    shared: &Shared,
    method: &'static str,
    rpc_service: Option<&str>,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(8);
    if method == "_OTHER" {
        attributes.push(KeyValue::new(
            HTTP_REQUEST_METHOD_ORIGINAL,
            request.method().as_str().to_owned(),
        ));
    }
    if let Some((address, port)) = semconv::server_address(request) {
        attributes.push(KeyValue::new(SERVER_ADDRESS, address));
        if let Some(port) = port {
            attributes.push(KeyValue::new(SERVER_PORT, i64::from(port)));
        }
    }
    if let Some(agent) = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
    {
        attributes.push(KeyValue::new(USER_AGENT_ORIGINAL, agent.to_owned()));
    }
    if let Some(version) = semconv::protocol_version(request.version()) {
        attributes.push(KeyValue::new(NETWORK_PROTOCOL_VERSION, version));
    }
    if let Some(service) = rpc_service {
        attributes.push(KeyValue::new(RPC_SYSTEM, "grpc"));
        attributes.push(KeyValue::new(RPC_SERVICE, service.to_owned()));
        // `rpc.method` waits for the answer: `_OTHER` if the method is unknown.
    } else if is_grpc(request.version(), request.headers()) {
        attributes.push(KeyValue::new(RPC_SYSTEM, "grpc"));
    }
    if shared.correlation_id
        && let Some(id) = request.extensions().get::<CorrelationId>()
    {
        attributes.push(KeyValue::new(CORRELATION_ID, id.as_str().to_owned()));
    }
    attributes
}
