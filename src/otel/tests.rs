//! Tests against the SDK's in-memory exporters. Providers are passed to the
//! layer explicitly, so no test touches global state.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use http::{HeaderValue, Request, Response, StatusCode};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId};
use opentelemetry::{Context as OtelContext, KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::correlation::{CorrelationIdLayer, PropagateCorrelationIdLayer};

const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

struct Telemetry {
    spans: InMemorySpanExporter,
    tracer: SdkTracerProvider,
    metrics: InMemoryMetricExporter,
    meter: SdkMeterProvider,
}

fn w3c() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

impl Telemetry {
    fn new() -> Self {
        let spans = InMemorySpanExporter::default();
        let tracer = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let metrics = InMemoryMetricExporter::default();
        let meter = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        Self {
            spans,
            tracer,
            metrics,
            meter,
        }
    }

    fn builder(&self) -> OtelLayerBuilder {
        OtelLayer::builder()
            .tracer_provider(&self.tracer)
            .meter_provider(&self.meter)
            .propagator(w3c())
    }

    fn layer(&self) -> OtelLayer {
        self.builder().build().unwrap()
    }

    fn spans(&self) -> Vec<SpanData> {
        self.spans.get_finished_spans().unwrap()
    }

    fn one_span(&self) -> SpanData {
        let mut spans = self.spans();
        assert_eq!(spans.len(), 1, "{spans:#?}");
        spans.pop().unwrap()
    }

    /// The latest export (cumulative temporality) of every metric.
    fn collect(&self) -> Vec<ResourceMetrics> {
        self.metrics.reset();
        self.meter.force_flush().unwrap();
        self.metrics.get_finished_metrics().unwrap()
    }
}

fn find<'a>(exported: &'a [ResourceMetrics], name: &str) -> Option<&'a Metric> {
    exported
        .iter()
        .rev()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .find(|m| m.name() == name)
}

/// Data points of a u64 or i64 sum as (attributes, value).
fn sum_points(exported: &[ResourceMetrics], name: &str) -> Vec<(Vec<KeyValue>, i64)> {
    let Some(metric) = find(exported, name) else {
        return Vec::new();
    };
    match metric.data() {
        AggregatedMetrics::U64(MetricData::Sum(sum)) => sum
            .data_points()
            .map(|p| (p.attributes().cloned().collect(), p.value() as i64))
            .collect(),
        AggregatedMetrics::I64(MetricData::Sum(sum)) => sum
            .data_points()
            .map(|p| (p.attributes().cloned().collect(), p.value()))
            .collect(),
        other => panic!("{name} is not a sum: {other:?}"),
    }
}

fn has(attributes: &[KeyValue], key: &str, value: impl Into<Value>) -> bool {
    let value = value.into();
    attributes
        .iter()
        .any(|kv| kv.key.as_str() == key && kv.value == value)
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

type Headers = &'static [(&'static str, &'static str)];

fn respond(
    status: u16,
    headers: Headers,
) -> impl Service<
    Request<()>,
    Response = Response<()>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<()>, Infallible>> + Send,
> + Clone {
    service_fn(move |_req: Request<()>| async move {
        let mut response = Response::new(());
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response
                .headers_mut()
                .append(*name, HeaderValue::from_static(value));
        }
        Ok::<_, Infallible>(response)
    })
}

fn get(path: &str) -> http::request::Builder {
    Request::builder().uri(path)
}

async fn send(layer: &OtelLayer, request: Request<()>) -> Response<OtelBody<()>> {
    layer
        .layer(respond(200, &[]))
        .oneshot(request)
        .await
        .unwrap()
}

fn trace_id(span: &SpanData) -> String {
    span.span_context.trace_id().to_string()
}

#[tokio::test]
async fn continues_a_valid_traceparent() {
    // W3C Trace Context §3.2: a valid traceparent is continued.
    let t = Telemetry::new();
    send(
        &t.layer(),
        get("/").header("traceparent", PARENT).body(()).unwrap(),
    )
    .await;
    let span = t.one_span();
    assert_eq!(trace_id(&span), PARENT_TRACE);
    assert_eq!(span.parent_span_id.to_string(), PARENT_SPAN);
    assert!(span.parent_span_is_remote);
}

#[tokio::test]
async fn invalid_traceparent_starts_a_new_trace() {
    // W3C Trace Context §3.2: `00-<32 hex>-<16 hex>-<2 hex>`,
    // lowercase; all-zero ids and version ff invalid → new trace.
    let cases = [
        "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01", // bad hex
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero span id
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase id
        "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // uppercase version
        // The SDK's TraceContextPropagator alone accepts these two: the
        // layer's own check is what rejects them.
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // v00 with a 5th field
        "00-4bf92f3577b34da6a3ce929d0e0e47-00f067aa0ba902b7-01",    // short trace id
        "garbage",
    ];
    for value in cases {
        let t = Telemetry::new();
        send(
            &t.layer(),
            get("/")
                .header("traceparent", value)
                .header("tracestate", "vendor=kept")
                .body(())
                .unwrap(),
        )
        .await;
        let span = t.one_span();
        assert_ne!(trace_id(&span), PARENT_TRACE, "{value} continued");
        assert!(span.span_context.trace_id() != TraceId::INVALID);
        assert_eq!(span.parent_span_id, SpanId::INVALID, "{value} has a parent");
        // No traceparent, no tracestate (W3C §3.3: parse tracestate only
        // with a valid traceparent).
        assert_eq!(span.span_context.trace_state().header(), "", "{value}");
    }
}

#[tokio::test]
async fn two_traceparent_lines_start_a_new_trace() {
    // W3C Trace Context §3.2: several traceparent headers are invalid.
    let t = Telemetry::new();
    send(
        &t.layer(),
        get("/")
            .header("traceparent", PARENT)
            .header(
                "traceparent",
                "00-11111111111111111111111111111111-2222222222222222-01",
            )
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(t.one_span().parent_span_id, SpanId::INVALID);
}

#[tokio::test]
async fn a_bad_tracestate_never_breaks_traceparent() {
    // W3C Trace Context §3.3: tracestate ≤ 32 members; a bad tracestate is
    // discarded, the traceparent still continued.
    let many = (0..33)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    for (tracestate, expected) in [
        ("vendor=abc", "vendor=abc"),
        ("not a list member", ""),
        ("=novalue", ""),
        (many.as_str(), ""),
    ] {
        let t = Telemetry::new();
        send(
            &t.layer(),
            get("/")
                .header("traceparent", PARENT)
                .header("tracestate", tracestate)
                .body(())
                .unwrap(),
        )
        .await;
        let span = t.one_span();
        assert_eq!(trace_id(&span), PARENT_TRACE, "{tracestate}");
        assert_eq!(span.span_context.trace_state().header(), expected);
    }
    // Two tracestate lines are one list.
    let t = Telemetry::new();
    send(
        &t.layer(),
        get("/")
            .header("traceparent", PARENT)
            .header("tracestate", "a=1")
            .header("tracestate", "b=2")
            .body(())
            .unwrap(),
    )
    .await;
    assert_eq!(t.one_span().span_context.trace_state().header(), "a=1,b=2");
}

#[tokio::test]
async fn baggage_reaches_the_handler_but_not_the_span() {
    // W3C Baggage: propagated, never copied into logs or attributes.
    let t = Telemetry::new();
    let seen = Arc::new(Mutex::new(None));
    let seen_in = Arc::clone(&seen);
    let service = t.layer().layer(service_fn(move |_req: Request<()>| {
        let value = OtelContext::current()
            .baggage()
            .get("tenant")
            .map(|v| v.to_string());
        *seen_in.lock().unwrap() = value;
        async { Ok::<_, Infallible>(Response::new(())) }
    }));
    service
        .oneshot(
            get("/")
                .header("traceparent", PARENT)
                .header("baggage", "tenant=acme")
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().as_deref(), Some("acme"));
    let span = t.one_span();
    assert!(
        !span
            .attributes
            .iter()
            .any(|kv| kv.value.as_str().contains("acme"))
    );
}

#[tokio::test]
async fn baggage_is_propagated_to_outgoing_requests() {
    // W3C Baggage: what came in goes out with the next call.
    let t = Telemetry::new();
    let client = ServiceBuilder::new()
        .layer(PropagateCorrelationIdLayer::new().with_propagator(w3c()))
        .service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req.headers().get("baggage").cloned())
        });
    let seen = Arc::new(Mutex::new(None));
    let seen_in = Arc::clone(&seen);
    let service = t.layer().layer(service_fn(move |_req: Request<()>| {
        let client = client.clone();
        let seen = Arc::clone(&seen_in);
        async move {
            *seen.lock().unwrap() = client.oneshot(Request::new(())).await.unwrap();
            Ok::<_, Infallible>(Response::new(()))
        }
    }));
    service
        .oneshot(get("/").header("baggage", "tenant=acme").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(seen.lock().unwrap().take().unwrap(), "tenant=acme");
}

#[tokio::test]
async fn restart_at_a_trust_boundary() {
    let t = Telemetry::new();
    let layer = t
        .builder()
        .incoming_trace(IncomingTrace::Restart)
        .build()
        .unwrap();
    // Baggage from beyond the boundary is dropped too.
    let baggage_seen = Arc::new(Mutex::new(None));
    let baggage_in = Arc::clone(&baggage_seen);
    let service = layer.layer(service_fn(move |_req: Request<()>| {
        *baggage_in.lock().unwrap() = Some(OtelContext::current().baggage().len());
        async { Ok::<_, Infallible>(Response::new(())) }
    }));
    let request = get("/")
        .header("traceparent", PARENT)
        .header("baggage", "tenant=acme")
        .body(())
        .unwrap();
    service.oneshot(request).await.unwrap();
    assert_eq!(*baggage_seen.lock().unwrap(), Some(0));
    let span = t.one_span();
    assert_ne!(trace_id(&span), PARENT_TRACE);
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert!(span.links.links.is_empty());

    let t = Telemetry::new();
    let layer = t
        .builder()
        .incoming_trace(IncomingTrace::RestartWithLink)
        .build()
        .unwrap();
    send(
        &layer,
        get("/").header("traceparent", PARENT).body(()).unwrap(),
    )
    .await;
    let span = t.one_span();
    assert_ne!(trace_id(&span), PARENT_TRACE);
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    let links = &span.links.links;
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].span_context.trace_id().to_string(), PARENT_TRACE);
    assert_eq!(links[0].span_context.span_id().to_string(), PARENT_SPAN);
}

#[tokio::test]
async fn server_span_name_and_attributes() {
    // HTTP semconv: kind SERVER, name `{method} {route}`, required and
    // recommended attributes.
    let t = Telemetry::new();
    let mut request = Request::builder()
        .uri("/users/42?secret=1")
        .header("host", "api.example.com:8443")
        .header("user-agent", "curl/8.0")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(Route::from_static("/users/{id}"));
    send(&t.layer(), request).await;
    let span = t.one_span();
    assert_eq!(span.name, "GET /users/{id}");
    assert_eq!(span.span_kind, SpanKind::Server);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(
        attr(&span, "http.request.method"),
        Some(&Value::from("GET"))
    );
    assert_eq!(attr(&span, "url.path"), Some(&Value::from("/users/42")));
    assert_eq!(attr(&span, "url.scheme"), Some(&Value::from("http")));
    assert_eq!(attr(&span, "http.route"), Some(&Value::from("/users/{id}")));
    assert_eq!(
        attr(&span, "http.response.status_code"),
        Some(&Value::I64(200))
    );
    assert_eq!(
        attr(&span, "server.address"),
        Some(&Value::from("api.example.com"))
    );
    assert_eq!(attr(&span, "server.port"), Some(&Value::I64(8443)));
    assert_eq!(
        attr(&span, "user_agent.original"),
        Some(&Value::from("curl/8.0"))
    );
    assert_eq!(
        attr(&span, "network.protocol.version"),
        Some(&Value::from("1.1"))
    );
    assert_eq!(attr(&span, "error.type"), None);
    // The query string is not recorded (it may carry credentials).
    assert!(
        !span
            .attributes
            .iter()
            .any(|kv| kv.value.as_str().contains("secret"))
    );
}

#[tokio::test]
async fn without_a_route_the_span_is_named_after_the_method() {
    // HTTP semconv: never the raw path; `{method}` alone; unknown methods
    // are `_OTHER` and named `HTTP`.
    let t = Telemetry::new();
    send(&t.layer(), get("/users/42").body(()).unwrap()).await;
    let span = t.one_span();
    assert_eq!(span.name, "GET");
    assert_eq!(attr(&span, "http.route"), None);

    let t = Telemetry::new();
    let request = Request::builder()
        .method("PURGE")
        .uri("/x")
        .body(())
        .unwrap();
    send(&t.layer(), request).await;
    let span = t.one_span();
    assert_eq!(span.name, "HTTP");
    assert_eq!(
        attr(&span, "http.request.method"),
        Some(&Value::from("_OTHER"))
    );
    assert_eq!(
        attr(&span, "http.request.method_original"),
        Some(&Value::from("PURGE"))
    );
}

#[tokio::test]
async fn route_from_the_hook_or_the_response() {
    let t = Telemetry::new();
    let layer = t
        .builder()
        .route_with(|head: &RequestHead<'_>| {
            head.uri()
                .path()
                .starts_with("/items/")
                .then(|| Route::from_static("/items/:id"))
        })
        .build()
        .unwrap();
    send(&layer, get("/items/9").body(()).unwrap()).await;
    assert_eq!(t.one_span().name, "GET /items/:id");

    // A handler (or inner router) names the route on the response.
    let t = Telemetry::new();
    let service = t.layer().layer(service_fn(|_req: Request<()>| async {
        let mut response = Response::new(());
        response.extensions_mut().insert(Route::new("/late/{x}"));
        Ok::<_, Infallible>(response)
    }));
    service
        .oneshot(get("/late/1").body(()).unwrap())
        .await
        .unwrap();
    let span = t.one_span();
    assert_eq!(span.name, "GET /late/{x}");
    assert_eq!(attr(&span, "http.route"), Some(&Value::from("/late/{x}")));
}

#[tokio::test]
async fn only_server_errors_are_span_errors() {
    // HTTP semconv: status Error only for 5xx, with `error.type`.
    let t = Telemetry::new();
    t.layer()
        .layer(respond(503, &[]))
        .oneshot(get("/").body(()).unwrap())
        .await
        .unwrap();
    let span = t.one_span();
    assert!(matches!(span.status, Status::Error { .. }));
    assert_eq!(attr(&span, "error.type"), Some(&Value::from("503")));

    for status in [400, 401, 404, 429] {
        let t = Telemetry::new();
        t.layer()
            .layer(respond(status, &[]))
            .oneshot(get("/").body(()).unwrap())
            .await
            .unwrap();
        let span = t.one_span();
        assert_eq!(span.status, Status::Unset, "{status}");
        assert_eq!(attr(&span, "error.type"), None);
    }
}

#[derive(Debug)]
struct Broken;

#[tokio::test]
async fn a_service_error_is_a_span_error() {
    let t = Telemetry::new();
    let service = t.layer().layer(service_fn(|_req: Request<()>| async {
        Err::<Response<()>, _>(Broken)
    }));
    assert!(service.oneshot(get("/").body(()).unwrap()).await.is_err());
    let span = t.one_span();
    assert!(matches!(span.status, Status::Error { .. }));
    assert!(
        attr(&span, "error.type")
            .unwrap()
            .as_str()
            .ends_with("Broken")
    );
}

#[tokio::test]
async fn correlation_id_is_a_span_attribute() {
    let t = Telemetry::new();
    let service = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(t.layer())
        .service(respond(200, &[]));
    service
        .oneshot(get("/").header("x-request-id", "req-77").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        attr(&t.one_span(), CORRELATION_ID),
        Some(&Value::from("req-77"))
    );
}

#[tokio::test]
async fn context_is_current_inside_and_propagated_outgoing() {
    // The server span is current while the inner service runs; the client
    // layer injects it into outgoing requests.
    let t = Telemetry::new();
    let client = ServiceBuilder::new()
        .layer(PropagateCorrelationIdLayer::new().with_propagator(TraceContextPropagator::new()))
        .service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req.headers().get("traceparent").cloned())
        });
    let seen = Arc::new(Mutex::new(None));
    let seen_in = Arc::clone(&seen);
    let service = t.layer().layer(service_fn(move |_req: Request<()>| {
        let client = client.clone();
        let seen = Arc::clone(&seen_in);
        async move {
            tokio::task::yield_now().await; // across polls
            let current = OtelContext::current().span().span_context().trace_id();
            let sent = client.oneshot(Request::new(())).await.unwrap();
            *seen.lock().unwrap() = Some((current, sent));
            Ok::<_, Infallible>(Response::new(()))
        }
    }));
    service
        .oneshot(get("/").header("traceparent", PARENT).body(()).unwrap())
        .await
        .unwrap();
    let span = t.one_span();
    let (current, sent) = seen.lock().unwrap().take().unwrap();
    assert_eq!(current.to_string(), PARENT_TRACE);
    let expected = format!("00-{PARENT_TRACE}-{}-01", span.span_context.span_id());
    assert_eq!(sent.unwrap(), expected.as_str());
    // Outside the request nothing is current.
    assert!(!OtelContext::current().has_active_span());
}

// Feature `otel` alone does not change what `PropagateCorrelationId` sends:
// trace context is injected only when asked for.
#[tokio::test]
async fn propagate_correlation_id_injects_trace_context_only_when_asked() {
    use opentelemetry::context::FutureExt;
    let provider = SdkTracerProvider::builder().build();
    let span = opentelemetry::trace::Tracer::start(
        &opentelemetry::trace::TracerProvider::tracer(&provider, "t"),
        "outer",
    );
    let cx = opentelemetry::Context::current_with_span(span);
    let sent = |layer: PropagateCorrelationIdLayer| {
        let client = layer.layer(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req.headers().contains_key("traceparent"))
        }));
        client.oneshot(Request::new(())).with_context(cx.clone())
    };
    assert!(!sent(PropagateCorrelationIdLayer::new()).await.unwrap());
    assert!(
        sent(PropagateCorrelationIdLayer::new().with_propagator(TraceContextPropagator::new()))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn outgoing_injection_keeps_existing_headers() {
    use opentelemetry::context::FutureExt;
    use opentelemetry::trace::{SpanContext, TraceFlags, TraceState};
    let client = ServiceBuilder::new()
        .layer(PropagateCorrelationIdLayer::new().with_propagator(TraceContextPropagator::new()))
        .service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req.headers().get("traceparent").cloned())
        });
    // No current span: nothing is injected.
    let sent = client.clone().oneshot(Request::new(())).await.unwrap();
    assert_eq!(sent, None);

    let remote = SpanContext::new(
        TraceId::from_hex(PARENT_TRACE).unwrap(),
        SpanId::from_hex(PARENT_SPAN).unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    let cx = OtelContext::new().with_remote_span_context(remote);
    let sent = client
        .clone()
        .oneshot(Request::new(()))
        .with_context(cx.clone())
        .await
        .unwrap();
    assert_eq!(sent.unwrap(), PARENT);
    // A header the caller set is kept.
    let own = "00-11111111111111111111111111111111-2222222222222222-00";
    let request = Request::builder()
        .header("traceparent", own)
        .body(())
        .unwrap();
    let sent = client.oneshot(request).with_context(cx).await.unwrap();
    assert_eq!(sent.unwrap(), own);
}

#[tokio::test]
async fn duration_histogram_per_semconv() {
    // HTTP semconv: http.server.request.duration, unit s, advised buckets,
    // attributes method, status code, route, scheme.
    let t = Telemetry::new();
    let mut request = get("/users/1").body(()).unwrap();
    request
        .extensions_mut()
        .insert(Route::from_static("/users/{id}"));
    t.layer()
        .layer(respond(500, &[]))
        .oneshot(request)
        .await
        .unwrap();
    let exported = t.collect();
    let metric = find(&exported, "http.server.request.duration").expect("exported");
    assert_eq!(metric.unit(), "s");
    let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
        panic!("not an f64 histogram: {:?}", metric.data());
    };
    let points: Vec<_> = histogram.data_points().collect();
    assert_eq!(points.len(), 1);
    let point = points[0];
    assert_eq!(point.count(), 1);
    assert_eq!(point.bounds().collect::<Vec<_>>(), DURATION_BUCKETS);
    assert_eq!(
        DURATION_BUCKETS,
        [
            0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
        ]
    );
    let attributes: Vec<KeyValue> = point.attributes().cloned().collect();
    assert!(has(&attributes, "http.request.method", "GET"));
    assert!(has(&attributes, "http.response.status_code", 500_i64));
    assert!(has(&attributes, "http.route", "/users/{id}"));
    assert!(has(&attributes, "url.scheme", "http"));
    assert!(has(&attributes, "error.type", "500"));
    // Never the raw path.
    assert!(!attributes.iter().any(|kv| kv.key.as_str() == "url.path"));
}

#[tokio::test]
async fn active_requests_up_then_back_to_zero() {
    // HTTP semconv: http.server.active_requests (UpDownCounter).
    let t = Arc::new(Telemetry::new());
    let t_in = Arc::clone(&t);
    let during = Arc::new(Mutex::new(Vec::new()));
    let during_in = Arc::clone(&during);
    let service = t.layer().layer(service_fn(move |_req: Request<()>| {
        *during_in.lock().unwrap() = sum_points(&t_in.collect(), "http.server.active_requests");
        async { Ok::<_, Infallible>(Response::new(())) }
    }));
    service.oneshot(get("/").body(()).unwrap()).await.unwrap();
    let during = during.lock().unwrap().clone();
    assert_eq!(during.len(), 1);
    assert_eq!(during[0].1, 1);
    assert!(has(&during[0].0, "http.request.method", "GET"));
    assert!(has(&during[0].0, "url.scheme", "http"));
    let after = sum_points(&t.collect(), "http.server.active_requests");
    assert_eq!(after[0].1, 0);

    // A cancelled request (future dropped) is no longer active either.
    let mut service = t.layer().layer(service_fn(|_req: Request<()>| {
        std::future::pending::<Result<Response<()>, Infallible>>()
    }));
    let future = service
        .ready()
        .await
        .unwrap()
        .call(get("/").body(()).unwrap());
    assert_eq!(
        sum_points(&t.collect(), "http.server.active_requests")[0].1,
        1
    );
    drop(future);
    assert_eq!(
        sum_points(&t.collect(), "http.server.active_requests")[0].1,
        0
    );
}

// Regression (review): a request dropped before its response head (the
// client went away) ended neither through the layer nor in the duration
// histogram. Now its span ends, without a status code or an error, and
// its duration is recorded.
#[tokio::test]
async fn a_request_cancelled_before_its_response_is_still_measured() {
    let t = Telemetry::new();
    let mut service = t.layer().layer(service_fn(|_req: Request<()>| {
        std::future::pending::<Result<Response<()>, Infallible>>()
    }));
    let future = service
        .ready()
        .await
        .unwrap()
        .call(get("/").body(()).unwrap());
    assert!(t.spans().is_empty());
    drop(future);
    let span = t.one_span();
    assert_eq!(attr(&span, "http.response.status_code"), None);
    assert_eq!(span.status, Status::Unset);
    let exported = t.collect();
    let metric = find(&exported, "http.server.request.duration").expect("exported");
    let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
        panic!("not an f64 histogram: {:?}", metric.data());
    };
    let points: Vec<_> = histogram.data_points().collect();
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].count(), 1);
    let attributes: Vec<KeyValue> = points[0].attributes().cloned().collect();
    assert!(!attributes.iter().any(|kv| kv.key.as_str() == "error.type"));
}

// Regression (review): the rate-limited counter named the first policy of
// `RateLimit-Policy`, which lists every policy of the layer, so a denial by
// the second policy was counted for the first. Our limiter now names the
// policy that denied.
#[cfg(feature = "rate-limit")]
#[tokio::test]
async fn rate_limited_requests_are_counted_for_the_policy_that_denied() {
    use crate::rate_limit::{Global, LimitRateLayer, Policy, Quota};
    let t = Telemetry::new();
    let limiter = LimitRateLayer::builder()
        .policy(Policy::new("burst", Quota::per_minute(100)).key(Global))
        .policy(Policy::new("per hour", Quota::per_hour(1)).key(Global))
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(t.layer())
        .layer(limiter)
        .service(respond(200, &[]));
    for _ in 0..2 {
        service
            .clone()
            .oneshot(get("/").body(()).unwrap())
            .await
            .unwrap();
    }
    let limited = sum_points(&t.collect(), "tower_edge.rate_limit.limited");
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].1, 1);
    assert!(has(&limited[0].0, RATE_LIMIT_POLICY, "per hour"));
}

#[tokio::test]
async fn counters_for_auth_failures_rate_limits_and_not_modified() {
    let t = Telemetry::new();
    let layer = t.layer();
    let call = |status, headers| {
        layer
            .layer(respond(status, headers))
            .oneshot(get("/").body(()).unwrap())
    };
    call(
        401,
        &[(
            "www-authenticate",
            r#"Bearer realm="api", error="invalid_token""#,
        )],
    )
    .await
    .unwrap();
    call(401, &[("www-authenticate", r#"Bearer realm="api""#)])
        .await
        .unwrap();
    call(429, &[("ratelimit-policy", r#""per-ip";q=100;w=60"#)])
        .await
        .unwrap();
    call(304, &[]).await.unwrap();
    call(200, &[]).await.unwrap();

    let exported = t.collect();
    let auth = sum_points(&exported, "tower_edge.auth.failures");
    assert_eq!(auth.len(), 2, "{auth:?}");
    assert!(
        auth.iter()
            .any(|(a, v)| *v == 1 && has(a, "error.type", "invalid_token"))
    );
    assert!(
        auth.iter()
            .any(|(a, v)| *v == 1 && has(a, "error.type", "missing_credentials"))
    );
    let limited = sum_points(&exported, "tower_edge.rate_limit.limited");
    assert_eq!(limited.len(), 1);
    assert_eq!(limited[0].1, 1);
    assert!(has(&limited[0].0, RATE_LIMIT_POLICY, "per-ip"));
    let not_modified = sum_points(&exported, "tower_edge.cache.not_modified");
    assert_eq!(not_modified.iter().map(|p| p.1).sum::<i64>(), 1);

    // The hooks for the other layers move their own counters.
    layer.metrics().store_error("timeout");
    layer.metrics().jwks_fetch_succeeded();
    layer.metrics().jwks_fetch_failed("status");
    let exported = t.collect();
    let store = sum_points(&exported, "tower_edge.rate_limit.store.errors");
    assert!(has(&store[0].0, "error.type", "timeout"));
    let jwks = sum_points(&exported, "tower_edge.jwks.fetches");
    assert_eq!(jwks.iter().map(|p| p.1).sum::<i64>(), 2);
}

fn grpc_request() -> Request<()> {
    Request::builder()
        .method("POST")
        .uri("/pkg.Greeter/SayHello")
        .version(http::Version::HTTP_2)
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

#[tokio::test]
async fn grpc_span_attributes_and_error_codes() {
    // RPC semconv: rpc.system=grpc, rpc.grpc.status_code; server span error
    // only for 2, 4, 12, 13, 14, 15 (not 7, 8, 16).
    let cases: [(Headers, i64, bool); 5] = [
        (&[("grpc-status", "0")], 0, false),
        (&[("grpc-status", "7")], 7, false),
        (&[("grpc-status", "8")], 8, false),
        (&[("grpc-status", "16")], 16, false),
        (&[("grpc-status", "13")], 13, true),
    ];
    for (headers, code, error) in cases {
        let t = Telemetry::new();
        t.layer()
            .layer(respond(200, headers))
            .oneshot(grpc_request())
            .await
            .unwrap();
        let span = t.one_span();
        assert_eq!(span.name, "pkg.Greeter/SayHello");
        assert_eq!(span.span_kind, SpanKind::Server);
        assert_eq!(attr(&span, "rpc.system"), Some(&Value::from("grpc")));
        assert_eq!(
            attr(&span, "rpc.service"),
            Some(&Value::from("pkg.Greeter"))
        );
        assert_eq!(attr(&span, "rpc.method"), Some(&Value::from("SayHello")));
        assert_eq!(attr(&span, "rpc.grpc.status_code"), Some(&Value::I64(code)));
        assert_eq!(matches!(span.status, Status::Error { .. }), error, "{code}");
    }
}

/// A gRPC response streamed the usual way: headers, a message, then the
/// status in trailers.
fn streamed_grpc(
    code: &'static str,
) -> impl Service<
    Request<()>,
    Response = Response<impl http_body::Body<Data = bytes::Bytes, Error = Infallible>>,
    Error = Infallible,
    Future = impl Future + Send,
> + Clone {
    use http_body_util::{BodyExt, Full};
    service_fn(move |_req: Request<()>| async move {
        let body = Full::new(bytes::Bytes::from_static(b"message")).with_trailers(async move {
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static(code));
            Some(Ok::<_, Infallible>(trailers))
        });
        let mut response = Response::new(body);
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        Ok::<_, Infallible>(response)
    })
}

#[tokio::test]
async fn grpc_status_is_read_from_trailers_and_the_span_ends_with_the_body() {
    // RPC semconv: rpc.grpc.status_code is required; a streamed response
    // carries it in trailers, after the body.
    use http_body_util::BodyExt;
    for (code, error) in [("0", false), ("13", true), ("8", false)] {
        let t = Telemetry::new();
        let response = t
            .layer()
            .layer(streamed_grpc(code))
            .oneshot(grpc_request())
            .await
            .unwrap();
        // The head alone does not end the span.
        assert!(t.spans().is_empty());
        let collected = response.into_body().collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], code);
        let span = t.one_span();
        let expected: i64 = code.parse().unwrap();
        assert_eq!(
            attr(&span, "rpc.grpc.status_code"),
            Some(&Value::I64(expected))
        );
        assert_eq!(matches!(span.status, Status::Error { .. }), error, "{code}");
        let limited = sum_points(&t.collect(), "tower_edge.rate_limit.limited");
        assert_eq!(
            limited.iter().map(|p| p.1).sum::<i64>(),
            i64::from(code == "8")
        );
    }
}

#[tokio::test]
async fn a_body_dropped_early_still_ends_the_span() {
    let t = Telemetry::new();
    let response = t
        .layer()
        .layer(streamed_grpc("0"))
        .oneshot(grpc_request())
        .await
        .unwrap();
    drop(response);
    let span = t.one_span();
    // The status was never read: no code rather than a guessed one.
    assert_eq!(attr(&span, "rpc.grpc.status_code"), None);
    assert_eq!(
        sum_points(&t.collect(), "http.server.active_requests")[0].1,
        0
    );
}

#[tokio::test]
async fn grpc_rejections_move_the_counters() {
    // Our gRPC rejections: 16 unauthenticated, 7 permission denied, 8 rate
    // limited (trailers-only, HTTP 200).
    let t = Telemetry::new();
    let layer = t.layer();
    for headers in [
        &[("grpc-status", "16")][..],
        &[("grpc-status", "7")][..],
        &[("grpc-status", "8"), ("ratelimit", r#""per-user";r=0;t=2"#)][..],
    ] {
        let headers: Headers = headers;
        layer
            .layer(respond(200, headers))
            .oneshot(grpc_request())
            .await
            .unwrap();
    }
    let exported = t.collect();
    let auth = sum_points(&exported, "tower_edge.auth.failures");
    assert!(
        auth.iter()
            .any(|(a, _)| has(a, "error.type", "unauthenticated"))
    );
    assert!(
        auth.iter()
            .any(|(a, _)| has(a, "error.type", "permission_denied"))
    );
    let limited = sum_points(&exported, "tower_edge.rate_limit.limited");
    assert!(has(&limited[0].0, RATE_LIMIT_POLICY, "per-user"));
}

#[tokio::test]
async fn clones_share_the_same_state() {
    // Every clone of the service (one per connection) records into the same
    // instruments.
    let t = Telemetry::new();
    let service = t.layer().layer(respond(200, &[]));
    let first = service.clone();
    let second = service.clone();
    first.oneshot(get("/").body(()).unwrap()).await.unwrap();
    second.oneshot(get("/").body(()).unwrap()).await.unwrap();
    let exported = t.collect();
    let metric = find(&exported, "http.server.request.duration").unwrap();
    let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
        panic!("not a histogram");
    };
    assert_eq!(histogram.data_points().map(|p| p.count()).sum::<u64>(), 2);
    assert_eq!(t.spans().len(), 2);
}

#[tokio::test]
async fn without_an_sdk_the_layer_is_transparent() {
    // Globals untouched by every test: the no-op providers and propagator.
    // `ServiceBuilderExt::otel` adds this default layer.
    use crate::ServiceBuilderExt;
    let response = ServiceBuilder::new()
        .otel()
        .service(respond(418, &[("x-kept", "yes")]))
        .oneshot(get("/").header("traceparent", PARENT).body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 418);
    assert_eq!(response.headers()["x-kept"], "yes");
    assert_eq!(response.headers().len(), 1);
}

#[test]
fn bad_configuration_names_the_field() {
    let error = OtelLayer::builder()
        .default_url_scheme("ftp".parse().unwrap())
        .build()
        .unwrap_err();
    assert_eq!(error.field(), "default_url_scheme");
}

#[tokio::test]
async fn tracing_opentelemetry_spans_join_the_server_span() {
    // With tracing-opentelemetry, tracing spans opened inside the layer are
    // children of the server span: one span tree.
    use tracing_subscriber::layer::SubscriberExt;
    let t = Telemetry::new();
    let subscriber =
        tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(
            opentelemetry::trace::TracerProvider::tracer(&t.tracer, "app"),
        ));
    let _default = tracing::subscriber::set_default(subscriber);
    let service = t.layer().layer(service_fn(|_req: Request<()>| async {
        let span = tracing::info_span!("handler");
        span.in_scope(|| tracing::info!("inside"));
        drop(span);
        Ok::<_, Infallible>(Response::new(()))
    }));
    service
        .oneshot(get("/").header("traceparent", PARENT).body(()).unwrap())
        .await
        .unwrap();
    let spans = t.spans();
    let server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server)
        .unwrap();
    let handler = spans.iter().find(|s| s.name == "handler").unwrap();
    assert_eq!(trace_id(handler), PARENT_TRACE);
    assert_eq!(handler.parent_span_id, server.span_context.span_id());
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_matched_path_names_the_span() {
    let t = Telemetry::new();
    let app = axum::Router::new()
        .route("/users/{id}", axum::routing::get(|| async { "ok" }))
        .layer(t.layer());
    let response = app
        .oneshot(
            Request::builder()
                .uri("/users/42")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);
    let span = t.one_span();
    assert_eq!(span.name, "GET /users/{id}");
    assert_eq!(attr(&span, "http.route"), Some(&Value::from("/users/{id}")));
}

/// Every field of every `tracing` event and span, at every level, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

struct Fields<'a>(&'a mut Vec<String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push(format!("{}={value}", field.name()));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push(format!("{}={value:?}", field.name()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        event.record(&mut Fields(&mut self.0.lock().unwrap()));
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        attrs.record(&mut Fields(&mut self.0.lock().unwrap()));
    }

    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        values.record(&mut Fields(&mut self.0.lock().unwrap()));
    }
}

#[tokio::test]
async fn client_baggage_never_reaches_the_logs() {
    // W3C Baggage, Privacy Considerations (baggage may carry
    // user-identifiable data): baggage is propagated, never copied into
    // logs. The SDK's BaggagePropagator logs the whole header when a member
    // is invalid, so only valid members (W3C Baggage §3.3.1) may reach it,
    // and none when the incoming context is not continued.
    use tracing_subscriber::layer::SubscriberExt;
    const SECRET: &str = "s3cr3t";
    let captured = Captured::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(captured.clone()));
    // (header, the `tenant` the handler sees when the context is continued)
    let cases: [(&[u8], Option<&str>); 9] = [
        (b"tenant=s3cr3t", Some(SECRET)),
        (b"tenant = s3cr3t ;p ; q=1", Some(SECRET)),
        (b"tenant=s3cr3t,junk", Some(SECRET)),
        (b"tenant=s3cr3t,k=%ff", Some(SECRET)),
        (b"junk,tenant=s3cr3t,k=a b", Some(SECRET)),
        (b"s3cr3t", None),
        (b"k=s3cr3t%", None),
        (b"k=s3cr3t;", None),
        (b"k=s3cr3t\xe9", None),
    ];
    for incoming in [
        IncomingTrace::Continue,
        IncomingTrace::Restart,
        IncomingTrace::RestartWithLink,
    ] {
        for (header, expected) in cases {
            let t = Telemetry::new();
            let layer = t.builder().incoming_trace(incoming).build().unwrap();
            let seen = Arc::new(Mutex::new(None));
            let seen_in = Arc::clone(&seen);
            let service = layer.layer(service_fn(move |_req: Request<()>| {
                let cx = OtelContext::current();
                *seen_in.lock().unwrap() = Some(cx.baggage().get("tenant").map(|v| v.to_string()));
                tracing::trace!(probe = "handler ran");
                async { Ok::<_, Infallible>(Response::new(())) }
            }));
            let request = get("/")
                .header("traceparent", PARENT)
                .header("baggage", HeaderValue::from_bytes(header).unwrap())
                .body(())
                .unwrap();
            service.oneshot(request).await.unwrap();
            let expected = match incoming {
                IncomingTrace::Continue => expected.map(str::to_owned),
                _ => None,
            };
            let case = format!("{incoming:?} {:?}", String::from_utf8_lossy(header));
            assert_eq!(seen.lock().unwrap().take(), Some(expected), "{case}");
            let logged = std::mem::take(&mut *captured.0.lock().unwrap());
            assert!(logged.iter().any(|f| f == "probe=handler ran"), "{case}");
            assert!(
                !logged.iter().any(|f| f.contains(SECRET)),
                "{case}: {logged:?}"
            );
        }
    }
}

/// The W3C propagators, remembering the `baggage` they were shown.
#[derive(Debug, Default)]
struct BaggageSpy(Arc<Mutex<Vec<Option<String>>>>);

impl opentelemetry::propagation::TextMapPropagator for BaggageSpy {
    fn inject_context(&self, _: &OtelContext, _: &mut dyn opentelemetry::propagation::Injector) {}

    fn extract_with_context(
        &self,
        cx: &OtelContext,
        extractor: &dyn opentelemetry::propagation::Extractor,
    ) -> OtelContext {
        let shown = extractor.get("baggage").map(str::to_owned);
        self.0.lock().unwrap().push(shown);
        w3c().extract_with_context(cx, extractor)
    }

    fn fields(&self) -> opentelemetry::propagation::text_map_propagator::FieldIter<'_> {
        opentelemetry::propagation::text_map_propagator::FieldIter::new(&[])
    }
}

#[tokio::test]
async fn the_propagator_sees_only_valid_baggage_of_a_continued_context() {
    // W3C Baggage §3.3.1 grammar; and baggage is dropped at a trust boundary,
    // so the propagator is not shown it at all (it could log it).
    let header = "a = 1 ; p ;q= 2 , junk ,b=%41\t, c=%ff,";
    for (incoming, expected) in [
        (IncomingTrace::Continue, Some("a=1;p;q=2,b=%41")),
        (IncomingTrace::RestartWithLink, None),
    ] {
        let t = Telemetry::new();
        let spy = BaggageSpy::default();
        let shown = Arc::clone(&spy.0);
        let layer = t
            .builder()
            .propagator(spy)
            .incoming_trace(incoming)
            .build()
            .unwrap();
        let request = get("/")
            .header("traceparent", PARENT)
            .header("baggage", header)
            .body(())
            .unwrap();
        send(&layer, request).await;
        let shown = shown.lock().unwrap().clone();
        assert_eq!(shown, [expected.map(str::to_owned)], "{incoming:?}");
        if incoming == IncomingTrace::RestartWithLink {
            // The link still comes from the propagator.
            assert_eq!(t.one_span().links.links.len(), 1);
        }
    }
}

fn grpc_call(path: &str) -> Request<()> {
    Request::builder()
        .method("POST")
        .uri(path)
        .version(http::Version::HTTP_2)
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

#[tokio::test]
async fn an_unknown_grpc_method_is_named_other() {
    // RPC semconv: a method the server does not know is `_OTHER`, the
    // client's name goes to rpc.method_original; the span name follows, so
    // random methods cannot multiply span names. Trailers-only, streamed
    // and HTTP 404 answers.
    let t = Telemetry::new();
    let layer = t.layer();
    layer
        .layer(respond(200, &[("grpc-status", "12")]))
        .oneshot(grpc_call("/pkg.Greeter/Random1"))
        .await
        .unwrap();
    let response = layer
        .layer(streamed_grpc("12"))
        .oneshot(grpc_call("/pkg.Greeter/Random2"))
        .await
        .unwrap();
    http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap();
    layer
        .layer(respond(404, &[]))
        .oneshot(grpc_call("/pkg.Unknown/Random3"))
        .await
        .unwrap();
    // Not the gRPC server's answer: a router's 405, and a tower-edge
    // rejection before routing (here 16, as the JWT layer answers).
    layer
        .layer(respond(405, &[]))
        .oneshot(grpc_call("/pkg.Greeter/Random4"))
        .await
        .unwrap();
    layer
        .layer(service_fn(|req: Request<()>| async move {
            // A tower-edge layer's answer carries its decision marker.
            let problem = crate::rejection::Problem::new(StatusCode::UNAUTHORIZED)
                .with_grpc_code(crate::rejection::GrpcCode::Unauthenticated)
                .with_decision(crate::decision::Decision::new(
                    crate::decision::EdgeLayer::JwtAuth,
                    crate::decision::Reason::InvalidToken,
                ));
            Ok::<_, Infallible>(
                crate::rejection::Rejections::default().respond::<(), _>(problem, &req),
            )
        }))
        .oneshot(grpc_call("/pkg.Greeter/Random5"))
        .await
        .unwrap();
    let spans = t.spans();
    assert_eq!(spans.len(), 5);
    for (span, original) in spans
        .iter()
        .zip(["Random1", "Random2", "Random3", "Random4", "Random5"])
    {
        assert_eq!(span.name, "_OTHER");
        assert_eq!(attr(span, "rpc.method"), Some(&Value::from("_OTHER")));
        assert_eq!(
            attr(span, "rpc.method_original"),
            Some(&Value::from(original))
        );
        let methods = span
            .attributes
            .iter()
            .filter(|kv| kv.key.as_str() == "rpc.method");
        assert_eq!(methods.count(), 1);
    }
    // A known method keeps its name, whatever its status.
    let t = Telemetry::new();
    t.layer()
        .layer(respond(200, &[("grpc-status", "5")]))
        .oneshot(grpc_call("/pkg.Greeter/SayHello"))
        .await
        .unwrap();
    let span = t.one_span();
    assert_eq!(span.name, "pkg.Greeter/SayHello");
    assert_eq!(attr(&span, "rpc.method"), Some(&Value::from("SayHello")));
    assert_eq!(attr(&span, "rpc.method_original"), None);
}

#[tokio::test]
async fn grpc_names_need_a_grpc_path_and_no_route_template() {
    // HTTP semconv: the span name is never the raw path. A route template
    // wins over a client's `content-type: application/grpc`, and a path
    // that is not `/{service}/{method}` (protobuf identifiers) is no gRPC
    // name.
    let t = Telemetry::new();
    let layer = t
        .builder()
        .route_with(|head: &RequestHead<'_>| {
            let path = head.uri().path();
            if path.starts_with("/users/") {
                Some(Route::from_static("/users/{id}"))
            } else if path == "/pkg.Greeter/SayHello" {
                // A route that is the literal path confirms the method.
                Some(Route::from_static("/pkg.Greeter/SayHello"))
            } else {
                None
            }
        })
        .build()
        .unwrap();
    let cases = [
        ("/users/42", "POST /users/{id}"),
        ("/users/abc", "POST /users/{id}"),
        ("/pkg.Greeter/SayHello", "pkg.Greeter/SayHello"),
        ("/pkg.Greeter/Say-Hello", "POST"),
        ("/a/b/c", "POST"),
        ("/pkg..Svc/M", "POST"),
    ];
    for (path, _) in cases {
        // As a gRPC server answers a call it knows.
        layer
            .layer(respond(
                200,
                &[("content-type", "application/grpc"), ("grpc-status", "0")],
            ))
            .oneshot(grpc_call(path))
            .await
            .unwrap();
    }
    let spans = t.spans();
    for (span, (path, name)) in spans.iter().zip(cases) {
        assert_eq!(span.name, name, "{path}");
        assert_eq!(attr(span, "rpc.system"), Some(&Value::from("grpc")));
        let grpc_named = !name.starts_with("POST");
        assert_eq!(attr(span, "rpc.service").is_some(), grpc_named, "{path}");
        assert_eq!(attr(span, "rpc.method").is_some(), grpc_named, "{path}");
    }
}

/// The one span of a call claiming gRPC (`method` on `path`) through
/// `router` behind the layer.
#[cfg(feature = "axum")]
async fn span_of_axum_grpc_call(router: axum::Router, method: &str, path: &str) -> SpanData {
    let t = Telemetry::new();
    let response = router
        .layer(t.layer())
        .oneshot(
            Request::builder()
                .method(method)
                .uri(path)
                .version(http::Version::HTTP_2)
                .header("content-type", "application/grpc")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    drop(response);
    t.one_span()
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_matched_path_wins_over_a_grpc_content_type() {
    // Scenario: a known axum route, a client claiming gRPC.
    let router = axum::Router::new().route("/users/{id}", axum::routing::get(|| async { "ok" }));
    let span = span_of_axum_grpc_call(router, "GET", "/users/42").await;
    assert_eq!(span.name, "GET /users/{id}");
    assert_eq!(attr(&span, "http.route"), Some(&Value::from("/users/{id}")));
    assert_eq!(attr(&span, "rpc.service"), None);
    assert_eq!(attr(&span, "rpc.method"), None);

    // A catch-all that is not the service's mount point is an ordinary
    // template.
    let router = axum::Router::new().route("/{*path}", axum::routing::post(|| async { "spa" }));
    let span = span_of_axum_grpc_call(router, "POST", "/pkg.Greeter/SayHello").await;
    assert_eq!(span.name, "POST /{*path}");

    // A gRPC service mounted under a catch-all keeps its gRPC name: the
    // template says nothing about the method.
    let router = axum::Router::new().route_service(
        "/pkg.Greeter/{*rest}",
        tower::service_fn(|_req: Request<axum::body::Body>| async {
            let mut response = Response::new(axum::body::Body::empty());
            let headers = response.headers_mut();
            headers.insert("content-type", HeaderValue::from_static("application/grpc"));
            headers.insert("grpc-status", HeaderValue::from_static("0"));
            Ok::<_, Infallible>(response)
        }),
    );
    let span = span_of_axum_grpc_call(router, "POST", "/pkg.Greeter/SayHello").await;
    assert_eq!(span.name, "pkg.Greeter/SayHello");
    assert_eq!(
        attr(&span, "rpc.service"),
        Some(&Value::from("pkg.Greeter"))
    );
    assert_eq!(attr(&span, "rpc.method"), Some(&Value::from("SayHello")));
}

// The overload layer's sheds are counted from its decision marker, by
// reason and partition; its per-key 429 / gRPC 8 is a shed, not a rate
// limit.
#[cfg(feature = "overload")]
#[tokio::test]
async fn overload_sheds_are_counted_by_reason_and_partition() {
    use crate::overload::{KeyLimit, OverloadLayer, Partition};
    use crate::rate_limit::Global;
    let t = Telemetry::new();
    let global = OverloadLayer::builder()
        .max_in_flight(1)
        .partition(Partition::new("everyone", 100))
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(t.layer())
        .layer(global)
        .service(respond(200, &[]));
    let held = service
        .clone()
        .oneshot(get("/").body(()).unwrap())
        .await
        .unwrap();
    let shed = service
        .clone()
        .oneshot(get("/").body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    drop((held, shed));
    let per_key = OverloadLayer::builder()
        .per_key(KeyLimit::new("per-client", 1).key(Global))
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(t.layer())
        .layer(per_key)
        .service(respond(200, &[]));
    let held = service
        .clone()
        .oneshot(grpc_call("/pkg.Greeter/SayHello"))
        .await
        .unwrap();
    let shed = service
        .clone()
        .oneshot(grpc_call("/pkg.Greeter/SayHello"))
        .await
        .unwrap();
    assert_eq!(shed.headers()["grpc-status"], "8");
    drop((held, shed));

    let exported = t.collect();
    let mut shed = sum_points(&exported, "tower_edge.overload.shed");
    shed.sort_by_key(|(_, v)| *v);
    assert_eq!(shed.len(), 2, "{shed:?}");
    assert!(shed.iter().any(|(a, v)| *v == 1
        && has(a, OVERLOAD_REASON, "overloaded")
        && has(a, OVERLOAD_PARTITION, "everyone")));
    assert!(shed.iter().any(|(a, v)| *v == 1
        && has(a, OVERLOAD_REASON, "concurrency_limited")
        && has(a, OVERLOAD_PARTITION, "per-client")));
    assert!(sum_points(&exported, "tower_edge.rate_limit.limited").is_empty());
    // The server span of a shed request says why.
    let spans = t.spans();
    assert_eq!(
        spans
            .iter()
            .filter(|s| attr(s, OVERLOAD_REASON) == Some(&Value::from("overloaded")))
            .filter(|s| attr(s, OVERLOAD_PARTITION) == Some(&Value::from("everyone")))
            .count(),
        1
    );
}

// The overload layer's gauges: in flight (per partition) and the limit.
#[cfg(feature = "overload")]
#[tokio::test]
async fn overload_gauges_report_in_flight_and_the_limit() {
    use crate::overload::{OverloadLayer, Partition};
    let t = Telemetry::new();
    let overload = OverloadLayer::builder()
        .max_in_flight(10)
        .partition(Partition::new("everyone", 50))
        .build()
        .unwrap();
    overload.register_gauges(&t.meter);
    let service = ServiceBuilder::new()
        .layer(overload.clone())
        .service(respond(200, &[]));
    let held = service
        .clone()
        .oneshot(get("/").body(()).unwrap())
        .await
        .unwrap();
    let exported = t.collect();
    let gauge = |name: &str| match find(&exported, name).map(|m| m.data()) {
        Some(AggregatedMetrics::U64(MetricData::Gauge(gauge))) => gauge
            .data_points()
            .map(|p| (p.attributes().cloned().collect::<Vec<_>>(), p.value()))
            .collect::<Vec<_>>(),
        other => panic!("{name}: {other:?}"),
    };
    let in_flight = gauge("tower_edge.overload.in_flight");
    assert!(
        in_flight
            .iter()
            .any(|(a, v)| *v == 1 && has(a, OVERLOAD_PARTITION, "everyone"))
    );
    assert!(
        in_flight
            .iter()
            .any(|(a, v)| *v == 0 && has(a, OVERLOAD_PARTITION, "other"))
    );
    assert_eq!(gauge("tower_edge.overload.limit")[0].1, 10);
    drop(held);
}

// The idempotency layer's decisions (replays, conflicts, mismatches...)
// reach the metrics through its `Decision` marker.
#[cfg(feature = "idempotency")]
#[tokio::test]
async fn idempotency_decisions_are_counted_by_reason() {
    use crate::idempotency::{IdempotencyLayer, RequestBody};
    let t = Telemetry::new();
    let handler = tower::service_fn(
        |_r: http::Request<RequestBody<http_body_util::Full<bytes::Bytes>>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                bytes::Bytes::from_static(b"created"),
            )))
        },
    );
    let service = ServiceBuilder::new()
        .layer(t.layer())
        .layer(IdempotencyLayer::new())
        .service(handler);
    let post =
        |body: &'static str| {
            let mut request = http::Request::post("/orders")
                .header("idempotency-key", "\"k\"")
                .body(http_body_util::Full::new(bytes::Bytes::from_static(
                    body.as_bytes(),
                )))
                .unwrap();
            request.extensions_mut().insert(crate::rate_limit::PeerAddr(
                std::net::SocketAddr::from(([192, 0, 2, 1], 1)),
            ));
            request
        };
    for body in ["a", "a", "a", "b"] {
        let response = service.clone().oneshot(post(body)).await.unwrap();
        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
    }
    let counted = sum_points(&t.collect(), "tower_edge.idempotency.decisions");
    let count = |reason: &'static str| {
        counted
            .iter()
            .find(|(attrs, _)| has(attrs, "tower_edge.idempotency.reason", reason))
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(count("replayed"), 2);
    assert_eq!(count("key_reused"), 1);
    assert_eq!(counted.len(), 2);
    // The server span of each says what the layer decided.
    let spans = t.spans();
    let with = |reason: &str| {
        spans
            .iter()
            .filter(|s| attr(s, IDEMPOTENCY_REASON) == Some(&Value::from(reason.to_owned())))
            .count()
    };
    assert_eq!((with("replayed"), with("key_reused")), (2, 1));
}
