//! One request, one trace, with `tracing-opentelemetry` (0.34, context
//! activation, its default) in the subscriber: stacked in the recommended
//! order (correlation, then OTel), the correlation layer's `request` span
//! is a child of the server span, in its trace, whether the caller sent a
//! `traceparent` or not, and a handler's event and span land in that trace.
//!
//! Its own test binary: the subscriber is process-wide (thread-local ones
//! race over tracing's interest cache, see `tests/correlation_logs.rs`).

use std::convert::Infallible;
use std::sync::OnceLock;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use opentelemetry::KeyValue;
use opentelemetry::trace::{SpanKind, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tower::{ServiceBuilder, ServiceExt};
use tower_edge::correlation::CorrelationIdLayer;
use tower_edge::otel::OtelLayer;
use tracing_subscriber::layer::SubscriberExt;

struct Telemetry {
    provider: SdkTracerProvider,
    spans: InMemorySpanExporter,
}

fn telemetry() -> &'static Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("tests")));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        Telemetry { provider, spans }
    })
}

/// Sends one request through correlation -> otel -> a handler that logs
/// and opens a span of its own; returns the spans of that request.
async fn one_request(id: &str, traceparent: Option<&str>) -> Vec<SpanData> {
    let telemetry = telemetry();
    let otel = OtelLayer::builder()
        .tracer_provider(&telemetry.provider)
        .propagator(TraceContextPropagator::new())
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(otel)
        .service_fn(|_req: Request<Full<Bytes>>| async {
            tracing::info!("in the handler");
            let work = tracing::info_span!("handler_work");
            work.in_scope(|| tracing::info!("inside the handler's span"));
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
    let mut request = Request::builder().uri("/things").header("x-request-id", id);
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    let response = service
        .oneshot(request.body(Full::default()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], id);
    response.into_body().collect().await.unwrap();

    let all = telemetry.spans.get_finished_spans().unwrap();
    let server = all
        .iter()
        .find(|span| {
            span.attributes
                .contains(&KeyValue::new("correlation_id", id.to_owned()))
        })
        .expect("the server span")
        .clone();
    all.into_iter()
        .filter(|span| span.span_context.trace_id() == server.span_context.trace_id())
        .collect()
}

fn check_one_tree(spans: &[SpanData]) -> (&SpanData, &SpanData) {
    let server = spans
        .iter()
        .find(|span| span.span_kind == SpanKind::Server)
        .expect("a server span");
    let request = spans
        .iter()
        .find(|span| span.name == "request")
        .expect("the correlation layer's span, in the server span's trace");
    // Parent and child: the request span under the server span.
    assert_eq!(request.parent_span_id, server.span_context.span_id());
    let work = spans
        .iter()
        .find(|span| span.name == "handler_work")
        .expect("the handler's span, in the same trace");
    assert_eq!(work.parent_span_id, request.span_context.span_id());
    // The handler's event is on the request span (same trace).
    assert!(
        request
            .events
            .iter()
            .any(|event| event.name == "in the handler"),
        "{:?}",
        request.events
    );
    (server, request)
}

#[tokio::test]
async fn a_new_trace_holds_the_server_span_and_the_request_span() {
    let spans = one_request("one-trace-new", None).await;
    let (server, request) = check_one_tree(&spans);
    assert_eq!(server.parent_span_id, opentelemetry::trace::SpanId::INVALID);
    assert!(
        request
            .attributes
            .contains(&KeyValue::new("correlation_id", "one-trace-new"))
    );
    // Nothing of this request is exported as a trace of its own.
    let all = telemetry().spans.get_finished_spans().unwrap();
    let stray = all.iter().filter(|span| {
        span.name == "request"
            && span
                .attributes
                .contains(&KeyValue::new("correlation_id", "one-trace-new"))
            && span.span_context.trace_id() != server.span_context.trace_id()
    });
    assert_eq!(stray.count(), 0);
}

#[tokio::test]
async fn a_continued_trace_holds_them_too() {
    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    let spans = one_request(
        "one-trace-continued",
        Some(&format!("00-{TRACE}-00f067aa0ba902b7-01")),
    )
    .await;
    let (server, _) = check_one_tree(&spans);
    assert_eq!(server.span_context.trace_id().to_string(), TRACE);
    assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
}

#[tokio::test]
async fn turned_off_the_correlation_span_is_its_own_trace_as_before() {
    // `span_to_otel(false)`: the old behaviour, kept for stacks where the
    // OTel layer is not directly inside. This proves the test above can
    // fail: with a caller's `traceparent`, the request span (opened before
    // the server span) is the root of another trace. (Without one, the
    // server span would be its child: the OTel layer continues the
    // current context when the request brings none.)
    let telemetry = telemetry();
    let otel = OtelLayer::builder()
        .tracer_provider(&telemetry.provider)
        .propagator(TraceContextPropagator::new())
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(
            CorrelationIdLayer::builder()
                .span_to_otel(false)
                .build()
                .unwrap(),
        )
        .layer(otel)
        .service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
    let request = Request::builder()
        .header("x-request-id", "one-trace-off")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(Full::default())
        .unwrap();
    service
        .oneshot(request)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap();
    let all = telemetry.spans.get_finished_spans().unwrap();
    let attribute = KeyValue::new("correlation_id", "one-trace-off");
    let mine: Vec<_> = all
        .iter()
        .filter(|span| span.attributes.contains(&attribute))
        .collect();
    assert_eq!(mine.len(), 2, "{mine:#?}");
    assert_ne!(
        mine[0].span_context.trace_id(),
        mine[1].span_context.trace_id()
    );
}

#[tokio::test]
async fn the_route_found_by_the_layer_is_in_the_request_for_the_layers_inside() {
    use tower_edge::otel::{RequestHead, Route};
    let otel = OtelLayer::builder()
        .tracer_provider(&telemetry().provider)
        .route_with(|_head: &RequestHead<'_>| Some(Route::from_static("/things/{id}")))
        .build()
        .unwrap();
    let service =
        ServiceBuilder::new()
            .layer(otel)
            .service_fn(|request: Request<Full<Bytes>>| async move {
                let route = request.extensions().get::<Route>().map(Route::as_str);
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(
                    route.unwrap_or("none").to_owned(),
                ))))
            });
    let request = Request::builder()
        .uri("/things/7")
        .body(Full::default())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"/things/{id}");
}
