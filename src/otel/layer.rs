//! [`OtelLayer`]: the server span and metrics of every request.

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::{Request, Response, StatusCode};
use opentelemetry::global::{self, BoxedTracer};
use opentelemetry::metrics::{Meter, MeterProvider};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Link, Span as _, SpanBuilder, SpanKind, Status, TraceContextExt, Tracer, TracerProvider,
};
use opentelemetry::{Context as OtelContext, KeyValue, StringValue};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::metrics::{EdgeMetrics, HttpInstruments, scope};
use super::propagation::Propagation;
use super::route::{self, MakeRoute, RequestHead, Route};
use super::semconv::{self, *};
use crate::config::ConfigError;
use crate::correlation::CorrelationId;
use crate::decision::{Decision, Reason};
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
    http: HttpInstruments,
    edge: EdgeMetrics,
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

    /// Names routes that neither a [`Route`] extension nor axum's
    /// `MatchedPath` names (see [`Route`] for the order).
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
                http: HttpInstruments::new(&meter),
                edge: EdgeMetrics::from_meter(&meter),
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
        &self.shared.edge
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

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
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

        shared.http.active.add(
            1,
            &[
                KeyValue::new(HTTP_REQUEST_METHOD, method),
                KeyValue::new(URL_SCHEME, scheme),
            ],
        );
        let active = ActiveRequest {
            shared: Arc::clone(&self.shared),
            method,
            scheme,
        };
        let protocol = semconv::protocol_version(request.version());

        let future = {
            let _attached = otel_cx.clone().attach();
            self.inner.call(request)
        };
        ResponseFuture {
            inner: future,
            state: Pending(Some(State {
                otel_cx,
                start,
                route,
                span_method,
                grpc,
                rpc_method,
                protocol,
                active,
            })),
        }
    }
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

/// Counts the request as active until dropped (completed or cancelled).
struct ActiveRequest {
    shared: Arc<Shared>,
    method: &'static str,
    scheme: &'static str,
}

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.shared.http.active.add(
            -1,
            &[
                KeyValue::new(HTTP_REQUEST_METHOD, self.method),
                KeyValue::new(URL_SCHEME, self.scheme),
            ],
        );
    }
}

struct State {
    otel_cx: OtelContext,
    start: Instant,
    route: Option<Route>,
    span_method: &'static str,
    grpc: bool,
    /// `Some` when the span is named `{service}/{method}`; the inner value
    /// is the method, kept for `rpc.method` when the span records.
    rpc_method: Option<Option<String>>,
    protocol: Option<&'static str>,
    active: ActiveRequest,
}

impl State {
    /// The response head is ready: record what it says; the rest waits for
    /// the end of the body (gRPC status in trailers, duration).
    fn on_head(mut self, parts: &http::response::Parts) -> Completion {
        let status = parts.status;
        let headers = &parts.headers;
        if self.route.is_none()
            && let Some(late) = parts.extensions.get::<Route>()
        {
            let span = self.otel_cx.span();
            if self.rpc_method.is_none() {
                span.update_name(format!("{} {late}", self.span_method));
            }
            span.set_attribute(KeyValue::new(HTTP_ROUTE, late.to_value()));
            self.route = Some(late.clone());
        }
        let span = self.otel_cx.span();
        span.set_attribute(KeyValue::new(
            HTTP_RESPONSE_STATUS_CODE,
            i64::from(status.as_u16()),
        ));
        let error_type = status
            .is_server_error()
            .then(|| semconv::status_error_type(status));
        let grpc_code = if self.grpc {
            semconv::grpc_status(headers)
        } else {
            None
        };
        let method_known = self.rpc_method.is_some() && semconv::answered_by_grpc_server(parts);
        // A tower-edge layer's answer says what it decided; only the
        // answers of other components (a handler, another limiter) are read
        // from their headers.
        let (auth, policy) = match parts.extensions.get::<Decision>() {
            Some(decision) => (
                decision
                    .reason()
                    .is_auth_failure()
                    .then(|| decision.reason().as_str()),
                (decision.reason() == Reason::RateLimited).then(|| {
                    decision
                        .policy_shared()
                        .map_or(StringValue::from("unknown"), |policy| {
                            StringValue::from(Arc::clone(policy))
                        })
                }),
            ),
            None => (
                semconv::auth_failure(status, headers),
                (status == StatusCode::TOO_MANY_REQUESTS || grpc_code == Some(8))
                    .then(|| semconv::rate_limit_policy(headers).into()),
            ),
        };
        Completion {
            method_known,
            auth,
            policy,
            state: self,
            status: Some(status),
            error_type,
            grpc_code,
        }
    }

    /// Ends a request that has no response head: the inner service failed
    /// (`error_type` is its error's type), or the response future was
    /// dropped (`None`: not an error of the server; the client went away,
    /// or a timeout outside fired).
    fn finish_without_head(self, error_type: Option<&'static str>) {
        drop(Completion {
            method_known: false,
            state: self,
            status: None,
            error_type: error_type.map(Cow::Borrowed),
            grpc_code: None,
            auth: None,
            policy: None,
        });
    }
}

/// What is known once the response head is ready. Dropping it — at the end
/// of the body, or when the body is dropped early — ends the span and
/// records the metrics.
struct Completion {
    state: State,
    /// A gRPC server answered the call itself (not a router, an error or a
    /// tower-edge rejection): the method may be known, unless it says 12.
    method_known: bool,
    status: Option<StatusCode>,
    error_type: Option<Cow<'static, str>>,
    grpc_code: Option<u16>,
    auth: Option<&'static str>,
    policy: Option<StringValue>,
}

impl Completion {
    fn trailers(&mut self, trailers: &http::HeaderMap) {
        if self.state.grpc && self.grpc_code.is_none() {
            self.grpc_code = semconv::grpc_status(trailers);
            if self.grpc_code == Some(8) && self.policy.is_none() {
                self.policy = Some(semconv::rate_limit_policy(trailers).into());
            }
        }
    }

    fn body_failed(&mut self, error_type: &'static str) {
        if self.error_type.is_none() {
            self.error_type = Some(Cow::Borrowed(error_type));
        }
    }

    fn record_duration(&self) {
        let state = &self.state;
        let active = &state.active;
        // A fixed array instead of a Vec: no allocation per request.
        let filler = || KeyValue::new(HTTP_REQUEST_METHOD, active.method);
        let mut attributes = [filler(), filler(), filler(), filler(), filler(), filler()];
        let mut len = 1;
        let mut push = |kv: KeyValue| {
            attributes[len] = kv;
            len += 1;
        };
        push(KeyValue::new(URL_SCHEME, active.scheme));
        if let Some(status) = self.status {
            push(KeyValue::new(
                HTTP_RESPONSE_STATUS_CODE,
                i64::from(status.as_u16()),
            ));
        }
        if let Some(route) = &state.route {
            push(KeyValue::new(HTTP_ROUTE, route.to_value()));
        }
        if let Some(error_type) = &self.error_type {
            push(KeyValue::new(ERROR_TYPE, error_type.clone()));
        }
        if let Some(protocol) = state.protocol {
            push(KeyValue::new(NETWORK_PROTOCOL_VERSION, protocol));
        }
        active
            .shared
            .http
            .duration
            .record(state.start.elapsed().as_secs_f64(), &attributes[..len]);
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        let span = self.state.otel_cx.span();
        let mut failed = self.error_type.is_some();
        if let Some(error_type) = &self.error_type {
            span.set_attribute(KeyValue::new(ERROR_TYPE, error_type.clone()));
        }
        if let Some(code) = self.grpc_code {
            span.set_attribute(KeyValue::new(RPC_GRPC_STATUS_CODE, i64::from(code)));
            failed |= semconv::grpc_server_error(code);
        }
        if let Some(rpc_method) = self.state.rpc_method.take() {
            // The client chose the method: unless the server answered the
            // call and knew it, it is `_OTHER`, so made-up methods cannot
            // multiply span names (not even ones rejected before routing).
            if !self.method_known || self.grpc_code == Some(12) {
                span.update_name("_OTHER");
                if let Some(original) = rpc_method {
                    span.set_attribute(KeyValue::new(RPC_METHOD, "_OTHER"));
                    span.set_attribute(KeyValue::new(RPC_METHOD_ORIGINAL, original));
                }
            } else if let Some(method) = rpc_method {
                span.set_attribute(KeyValue::new(RPC_METHOD, method));
            }
        }
        if failed {
            // The description is left empty: the status code says it all.
            span.set_status(Status::error(""));
        }
        span.end();
        self.record_duration();

        let edge = &self.state.active.shared.edge;
        let auth = match self.grpc_code {
            Some(16) => Some("unauthenticated"),
            Some(7) => Some("permission_denied"),
            _ => self.auth,
        };
        if let Some(reason) = auth {
            edge.auth_failure(reason);
        }
        if let Some(policy) = self.policy.take() {
            edge.rate_limited(policy);
        } else if self.grpc_code == Some(8) {
            edge.rate_limited(StringValue::from("unknown"));
        }
        if self.status == Some(StatusCode::NOT_MODIFIED) {
            edge.not_modified(self.state.route.as_ref());
        }
    }
}

pin_project! {
    /// Response body of [`TraceAndMeter`]: the inner body, unchanged. The
    /// server span ends and the duration is recorded when it reaches its
    /// end (reading gRPC trailers on the way) or is dropped.
    pub struct OtelBody<B> {
        #[pin]
        inner: B,
        completion: Option<Completion>,
    }
}

impl<B> OtelBody<B> {
    /// Unwraps the inner body. The span ends now.
    pub fn into_inner(self) -> B {
        self.inner
    }
}

impl<B> fmt::Debug for OtelBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelBody")
            .field("finished", &self.completion.is_none())
            .finish_non_exhaustive()
    }
}

impl<B: http_body::Body> http_body::Body for OtelBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        // Streaming handlers produce the body here: keep the span current.
        let attached = this
            .completion
            .as_ref()
            .map(|c| c.state.otel_cx.clone().attach());
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        drop(attached);
        if let Some(completion) = this.completion.as_mut() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        completion.trailers(trailers);
                    }
                }
                Some(Err(_)) => completion.body_failed(std::any::type_name::<B::Error>()),
                None => {}
            }
        }
        if !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream() {
            // Dropping the completion ends the span.
            this.completion.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

pin_project! {
    /// Response future of [`TraceAndMeter`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Pending,
    }
}

/// The request's state until its response head: dropped before that (the
/// client went away, a timeout fired), it still ends the span and records
/// the duration, with no status code.
struct Pending(Option<State>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(state) = self.0.take() {
            state.finish_without_head(None);
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("finished", &self.state.0.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<OtelBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Some(state) = this.state.0.as_ref() else {
            // Polled after completion: nothing left to record.
            return this.inner.poll(cx).map_ok(|response| {
                response.map(|inner| OtelBody {
                    inner,
                    completion: None,
                })
            });
        };
        let result = {
            // The server span is the current OpenTelemetry context while the
            // inner service runs, for outgoing propagation and for
            // tracing-opentelemetry.
            let _attached = state.otel_cx.clone().attach();
            ready!(this.inner.poll(cx))
        };
        let state = this.state.0.take();
        Poll::Ready(match result {
            Ok(response) => {
                let (parts, inner) = response.into_parts();
                let completion = state.map(|state| state.on_head(&parts));
                Ok(Response::from_parts(parts, OtelBody { inner, completion }))
            }
            Err(error) => {
                if let Some(state) = state {
                    state.finish_without_head(Some(std::any::type_name::<E>()));
                }
                Err(error)
            }
        })
    }
}
