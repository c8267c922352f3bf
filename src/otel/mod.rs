//! OpenTelemetry for every request: W3C trace-context propagation, an HTTP
//! (or gRPC) server span and the HTTP server metrics, per the semantic
//! conventions. Only the `opentelemetry` API crate is a dependency: you
//! choose the SDK and the exporter.
//!
//! [`OtelLayer`] does, for each request:
//!
//! * **Propagation.** `traceparent`, `tracestate` and `baggage` are read
//!   through the global text-map propagator
//!   (`opentelemetry::global::get_text_map_propagator`), or the one given to
//!   [`OtelLayerBuilder::propagator`]. Before the propagator sees them, the
//!   layer applies W3C Trace Context strictly, because propagators are
//!   lenient (the SDK's `TraceContextPropagator` accepts short or uppercase
//!   ids): a `traceparent` that is not exactly
//!   `<2 hex>-<32 hex>-<16 hex>-<2 hex>` in lowercase, has version `ff`,
//!   all-zero ids, or appears on several lines is ignored, and the request
//!   starts a new trace. A bad `tracestate` (more than 32 members, invalid
//!   keys or values) is dropped without affecting the `traceparent`. Several
//!   `tracestate` or `baggage` lines are joined. `baggage` is checked
//!   against the W3C Baggage grammar (`key OWS "=" OWS value *( OWS ";" OWS
//!   property )`, keys RFC 9110 tokens, values baggage octets whose
//!   percent-encoding decodes to UTF-8): each invalid list member is dropped
//!   and the valid ones are passed on, without optional whitespace, up to 64
//!   members and 8192 bytes (whole members only). Members are separated by
//!   `,`, which nothing inside a member may contain, so dropping one cannot
//!   change another. Propagators log what they cannot parse (the SDK's
//!   `BaggagePropagator` logs the whole header), so only what they can parse
//!   reaches them. Baggage is available to the handler in the OpenTelemetry
//!   context; it is never recorded in spans or logs. At a trust boundary,
//!   [`IncomingTrace::Restart`] ignores the incoming context (the propagator
//!   is not called), and [`IncomingTrace::RestartWithLink`] keeps it as a
//!   span link (the propagator is not shown `baggage`).
//! * **A server span** (kind `SERVER`) named `{method} {route}` when the
//!   route template is known (see [`Route`]: our extension, axum's
//!   `MatchedPath` with feature `axum`, a hook, or a late `Route` on the
//!   response), else `{method}` alone, never the raw path; `HTTP` for
//!   methods outside the standard set (`http.request.method` is then
//!   `_OTHER`). Attributes: `http.request.method`, `url.path`, `url.scheme`,
//!   `http.route` (when known), `http.response.status_code`, `error.type`
//!   and status Error on 5xx only (and when the inner service or the
//!   response body fails), `server.address`, `server.port`,
//!   `user_agent.original`, `network.protocol.version`,
//!   `http.request.method_original`, `rpc.*` for gRPC, and `correlation_id` (see
//!   [`CORRELATION_ID`]) when a [`CorrelationIdLayer`](crate::correlation::CorrelationIdLayer)
//!   runs outside. `url.query` is not recorded: queries may carry
//!   credentials (RFC 6750 §2.3).
//! * **gRPC** requests (as [`GrpcProtocol`](crate::rejection::GrpcProtocol) decides) get
//!   `rpc.system` = `grpc` and `rpc.grpc.status_code`. The path and the
//!   content type are the client's choice, so the span is named
//!   `{package.Service}/{Method}` (with `rpc.service` and `rpc.method`) only
//!   when: no route template is known (a [`Route`], `MatchedPath` or hook
//!   value that differs from the literal path and is not a catch-all like
//!   `/pkg.Greeter/{*rest}` at the call's own service, which is how a gRPC
//!   service is mounted in axum; it names the span `{method} {route}`
//!   instead), and the path is exactly `/{service}/{method}`, the service
//!   one or more protobuf identifiers (`[A-Za-z_][A-Za-z0-9_]*`) joined by
//!   `.` and the method one identifier (else the span is named after the
//!   HTTP method, as without a route). The name stands only if a gRPC
//!   server answered the call (HTTP 200 with a gRPC content type or
//!   `grpc-status`) and did not say UNIMPLEMENTED (12). Otherwise (a
//!   router's 404 or 405, a service error, a rejection by a tower-edge layer
//!   before any method was looked up) the span is renamed `_OTHER` as it
//!   ends, `rpc.method` is `_OTHER` and `rpc.method_original` holds the
//!   client's method (RPC semconv): made-up methods cannot multiply span
//!   names. Only codes 2, 4, 12, 13, 14 and 15 make the server span an
//!   error (7, 8 and 16 never do).
//! * **The span is current** (the OpenTelemetry `Context` is attached during
//!   every poll of the inner service), so the trace id is available to code
//!   and log formatters inside, and
//!   [`PropagateCorrelationIdLayer`](crate::correlation::PropagateCorrelationIdLayer)
//!   injects it into outgoing requests when asked to
//!   ([`with_global_propagator`](crate::correlation::PropagateCorrelationIdLayer::with_global_propagator)
//!   or [`with_propagator`](crate::correlation::PropagateCorrelationIdLayer::with_propagator);
//!   by default it sends only the correlation ID).
//! * **Metrics**: `http.server.request.duration` (histogram, unit `s`,
//!   buckets [`DURATION_BUCKETS`]; attributes `http.request.method`,
//!   `http.response.status_code`, `http.route`, `url.scheme`, `error.type`,
//!   `network.protocol.version`) and `http.server.active_requests`
//!   (up-down counter; a cancelled request is counted out too), plus the
//!   tower-edge counters of [`EdgeMetrics`] (auth failures by reason,
//!   rate-limited requests by policy, 304s served), derived from the
//!   responses the layer sees.
//!
//! # One span tree with `tracing`
//!
//! The layer makes the server span the *current OpenTelemetry context*
//! while the inner service runs. `tracing-opentelemetry` (0.34 is tested;
//! with context activation, its default) parents a new `tracing` span on
//! that context, so the spans of your handlers and of `#[instrument]` are
//! children of the server span, in its trace: one tree. No dependency on
//! `tracing-opentelemetry` is needed for this.
//!
//! The correlation layer's `request` span (the one that puts
//! `correlation_id` on every log line) is opened *by this layer* when a
//! [`CorrelationIdLayer`](crate::correlation::CorrelationIdLayer) runs
//! outside it (the recommended order): the correlation layer leaves it in
//! the request extensions, and this layer opens it once the server span is
//! current, so `tracing-opentelemetry` exports it as a child of the server
//! span, in the same trace, whether or not the caller sent a
//! `traceparent`. It is entered for every poll of the inner service and of
//! the response body, and gets the `route` field when the route is known.
//! See `CorrelationIdLayerBuilder::span_to_otel` to turn it off.
//!
//! A log line written inside the handler therefore carries the server
//! span's trace ID (and, without `tracing-opentelemetry`, its span ID; with
//! it, the `request` span's, a child of it): formatters read
//! `opentelemetry::Context::current()` or `tracing-opentelemetry`'s span
//! data, and `opentelemetry-appender-tracing` gives log records the current
//! context. See the README's "Observability" section and
//! `examples/common/logging.rs`.
//!
//! # Providers
//!
//! By default the layer uses the global tracer and meter providers, read
//! **when the layer is built**: install your SDK first
//! (`opentelemetry::global::set_tracer_provider`, `set_meter_provider`,
//! `set_text_map_propagator`). Without an SDK everything is a no-op and the
//! layer costs a few small allocations per request (the span name when a
//! route is known, the `url.path` attribute, the no-op span). Attributes
//! that only a recording span needs are not built at all.
//!
//! # When the span ends
//!
//! The response body is wrapped in an [`OtelBody`] (a pass-through): the
//! span ends, the duration is recorded and the request stops being active
//! when the body reaches its end or is dropped, so streamed responses are
//! measured whole. `rpc.grpc.status_code` comes from the response headers
//! (trailers-only responses, such as every rejection of tower-edge) or else
//! from the trailers at the end of the body; a body dropped before its
//! trailers leaves the attribute unset rather than guessing. While the body
//! is polled the span is current too, for streaming handlers. A request
//! whose response future is dropped before the response head (the client
//! went away, a timeout outside fired) ends its span and records its
//! duration too, with no status code and no error.
//!
//! # Default setup
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http::{Request, Response};
//! use opentelemetry_sdk::propagation::TraceContextPropagator;
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_edge::correlation::CorrelationIdLayer;
//! use tower_edge::otel::OtelLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // At start-up, install an SDK (here exporting to memory; in production
//! // opentelemetry-otlp), then build the layers.
//! let exporter = InMemorySpanExporter::default();
//! let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
//! opentelemetry::global::set_tracer_provider(provider);
//! opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
//!
//! let service = ServiceBuilder::new()
//!     .layer(CorrelationIdLayer::new())
//!     .layer(OtelLayer::new())
//!     .service_fn(|_req: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("hello")))
//!     });
//!
//! let req = Request::builder()
//!     .uri("/users/42")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(String::new())
//!     .unwrap();
//! service.oneshot(req).await.unwrap();
//!
//! let span = &exporter.get_finished_spans().unwrap()[0];
//! assert_eq!(span.name, "GET"); // no route known: never the raw path
//! assert_eq!(span.span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! # }
//! ```
//!
//! # Customised
//!
//! Explicit providers (no global state), a trust boundary that restarts
//! traces but links the caller's, route templates from a hook, TLS
//! terminated by this server:
//!
//! ```
//! use std::convert::Infallible;
//!
//! use http::{Request, Response, StatusCode};
//! use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
//! use opentelemetry_sdk::propagation::TraceContextPropagator;
//! use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_edge::otel::{IncomingTrace, OtelLayer, RequestHead, Route};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let spans = InMemorySpanExporter::default();
//! let tracer_provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
//! let metrics = InMemoryMetricExporter::default();
//! let meter_provider = SdkMeterProvider::builder()
//!     .with_reader(PeriodicReader::builder(metrics.clone()).build())
//!     .build();
//!
//! let layer = OtelLayer::builder()
//!     .tracer_provider(&tracer_provider)
//!     .meter_provider(&meter_provider)
//!     .propagator(TraceContextPropagator::new())
//!     .incoming_trace(IncomingTrace::RestartWithLink)
//!     .route_with(|head: &RequestHead<'_>| {
//!         head.uri().path().starts_with("/users/").then(|| Route::from_static("/users/{id}"))
//!     })
//!     .default_url_scheme(http::uri::Scheme::HTTPS)
//!     .build()
//!     .expect("valid configuration");
//! // Hand the counters to layers that report through them (e.g. Redis errors).
//! let _counters = layer.metrics().clone();
//!
//! let service = ServiceBuilder::new().layer(layer).service_fn(|_req: Request<String>| async {
//!     let mut res = Response::new(String::new());
//!     *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
//!     Ok::<_, Infallible>(res)
//! });
//! let req = Request::builder()
//!     .uri("/users/42")
//!     .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .body(String::new())
//!     .unwrap();
//! service.oneshot(req).await.unwrap();
//!
//! let span = &spans.get_finished_spans().unwrap()[0];
//! assert_eq!(span.name, "GET /users/{id}");
//! // A new trace, linked to the caller's.
//! assert_ne!(span.span_context.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert_eq!(span.links.links.len(), 1);
//!
//! meter_provider.force_flush().unwrap();
//! let exported = metrics.get_finished_metrics().unwrap();
//! let names: Vec<&str> = exported
//!     .iter()
//!     .flat_map(|rm| rm.scope_metrics())
//!     .flat_map(|sm| sm.metrics())
//!     .map(|m| m.name())
//!     .collect();
//! assert!(names.contains(&"http.server.request.duration"));
//! assert!(names.contains(&"tower_edge.rate_limit.limited"));
//! # }
//! ```

mod layer;
mod metrics;
mod propagation;
mod record;
mod route;
mod semconv;

pub use layer::{IncomingTrace, OtelLayer, OtelLayerBuilder, TraceAndMeter};
pub use metrics::{
    DURATION_BUCKETS, EdgeMetrics, IDEMPOTENCY_REASON, OVERLOAD_PARTITION, OVERLOAD_REASON,
    RATE_LIMIT_POLICY,
};
pub(crate) use propagation::Propagation;
pub use record::{OtelBody, ResponseFuture};
pub use route::{MakeRoute, RequestHead, Route};
pub use semconv::CORRELATION_ID;

#[cfg(test)]
mod tests;
