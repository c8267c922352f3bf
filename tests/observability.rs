//! Logs and traces that join up, through the axum example's whole stack on
//! a real socket: the JSON lines of `examples/common/logging.rs` (one
//! process-wide subscriber writing to memory) and the server spans
//! (an in-memory exporter behind the global tracer provider) are parsed
//! and matched by trace ID, span ID and correlation ID.
//!
//! OpenTelemetry logs data model: `TraceId` and `SpanId` on a log record
//! are the span current when it was emitted; W3C Trace Context §3.2 for
//! `traceparent`.

#[allow(dead_code)]
#[path = "../examples/axum.rs"]
mod example;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use bytes::Bytes;
use example::common::{self, Config};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::KeyValue;
use opentelemetry_sdk::logs::{InMemoryLogExporter, SdkLoggerProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};
use tower_edge::correlation::PropagateCorrelationIdLayer;
use tower_edge::rate_limit::Quota;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Telemetry {
    logs: Captured,
    spans: InMemorySpanExporter,
    /// The OpenTelemetry log records (the example's OTLP bridge, exporting
    /// to memory instead of OTLP).
    records: InMemoryLogExporter,
}

/// The global subscriber and tracer provider, once per test binary, before
/// any `OtelLayer` is built (it reads the global provider then).
fn telemetry() -> &'static Telemetry {
    static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();
    TELEMETRY.get_or_init(|| {
        let logs = Captured::default();
        let writer = logs.clone();
        let records = InMemoryLogExporter::default();
        let log_provider = SdkLoggerProvider::builder()
            .with_simple_exporter(records.clone())
            .build();
        let subscriber =
            common::logging::json_subscriber(move || writer.clone(), "info,tower_edge=debug")
                .with(common::logging::otel_bridge(&log_provider).unwrap());
        tracing::subscriber::set_global_default(subscriber).unwrap();
        // Records are exported as they are emitted (simple processor); the
        // provider lives as long as the process.
        std::mem::forget(log_provider);
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        opentelemetry::global::set_tracer_provider(provider);
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        Telemetry {
            logs,
            spans,
            records,
        }
    })
}

/// Every captured line, parsed: a line that is not one JSON object fails
/// the test (a forged newline would make one).
fn lines() -> Vec<serde_json::Map<String, Value>> {
    let bytes = telemetry().logs.0.lock().unwrap().clone();
    let text = String::from_utf8(bytes).unwrap();
    text.lines()
        .map(|line| match serde_json::from_str(line) {
            Ok(Value::Object(map)) => map,
            _ => panic!("not a JSON object on one line: {line:?}"),
        })
        .collect()
}

/// The lines of one request (by its correlation ID).
fn lines_of(id: &str) -> Vec<serde_json::Map<String, Value>> {
    lines()
        .into_iter()
        .filter(|line| line.get("correlation_id").and_then(Value::as_str) == Some(id))
        .collect()
}

/// The access-log line of request `id`, waiting (bounded) for the server
/// to finish the body, which writes it.
async fn access_line(id: &str) -> serde_json::Map<String, Value> {
    for _ in 0..200 {
        if let Some(line) = lines_of(id)
            .into_iter()
            .find(|line| line["target"] == "tower_edge::access_log")
        {
            return line;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no access-log line for {id}: {:#?}", lines_of(id));
}

/// The server span of request `id` (its `correlation_id` attribute),
/// waiting (bounded) for it to end.
async fn server_span(id: &str) -> SpanData {
    let attribute = KeyValue::new("correlation_id", id.to_owned());
    for _ in 0..200 {
        let finished = telemetry().spans.get_finished_spans().unwrap();
        if let Some(span) = finished
            .into_iter()
            .find(|span| span.attributes.contains(&attribute))
        {
            return span;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("no server span for {id}");
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Answers with the `traceparent` and `x-request-id` it received.
async fn downstream() -> SocketAddr {
    let app = Router::new().route(
        "/echo",
        axum::routing::get(|headers: HeaderMap| async move {
            let get = |name: &str| {
                headers
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_owned())
                    .unwrap_or_default()
            };
            format!("{} {}", get("traceparent"), get("x-request-id"))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// The example's app with one more route behind the same stack: a
/// handler that logs and calls `downstream` through
/// `PropagateCorrelationIdLayer`, passing neither the trace nor the ID by
/// hand.
async fn serve(config: &Config) -> SocketAddr {
    telemetry();
    let downstream = downstream().await;
    let extra = Router::new()
        .route(
            "/call-out",
            axum::routing::get(|State(downstream): State<SocketAddr>| async move {
                tracing::info!("calling downstream");
                let outgoing = ServiceBuilder::new()
                    .layer(PropagateCorrelationIdLayer::new().with_global_propagator())
                    .service(client());
                let request = Request::get(format!("http://{downstream}/echo"))
                    .body(Empty::new())
                    .unwrap();
                let response = outgoing.oneshot(request).await.unwrap();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                String::from_utf8(body.to_vec()).unwrap()
            }),
        )
        .with_state(downstream);
    let app = example::app_with(config, extra).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    addr
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let mut request = Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = client()
        .request(request.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

const TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

#[tokio::test]
async fn the_handler_line_the_access_line_the_server_span_and_the_next_hop_share_one_trace() {
    let addr = serve(&Config::default()).await;
    let (status, echoed) = get(
        addr,
        "/call-out",
        &[
            ("x-request-id", "obs-trace-1"),
            ("traceparent", &format!("00-{TRACE}-b7ad6b7169203331-01")),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let server = server_span("obs-trace-1").await;
    let trace_id = server.span_context.trace_id().to_string();
    let span_id = server.span_context.span_id().to_string();
    assert_eq!(
        trace_id, TRACE,
        "the server span continues the caller's trace"
    );
    assert_eq!(server.name, "GET /call-out");

    // The handler's event: the server span's trace and span IDs, the
    // route, the ID, and what the line must carry.
    let handler = lines_of("obs-trace-1")
        .into_iter()
        .find(|line| line["message"] == "calling downstream")
        .expect("the handler's line");
    assert_eq!(handler["trace_id"], trace_id.as_str());
    assert_eq!(handler["span_id"], span_id.as_str());
    assert_eq!(handler["route"], "/call-out");
    assert_eq!(handler["level"], "INFO");
    assert!(handler["timestamp"].as_str().unwrap().ends_with('Z'));

    // The access-log line: same trace, the request's facts.
    let access = access_line("obs-trace-1").await;
    assert_eq!(access["trace_id"], trace_id.as_str());
    assert_eq!(access["span_id"], span_id.as_str());
    assert_eq!(access["http.request.method"], "GET");
    assert_eq!(access["http.route"], "/call-out");
    assert_eq!(access["http.response.status_code"], 200);
    assert_eq!(access["http.response.body.size"], echoed.len());
    assert_eq!(access["client.address"], "127.0.0.1");
    assert!(access["duration_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        access.get("tower_edge.layer").is_none(),
        "the handler answered"
    );

    // The same events as OpenTelemetry log records (what goes over OTLP),
    // with the server span's trace context.
    let records = telemetry().records.get_emitted_logs().unwrap();
    let mine: Vec<_> = records
        .iter()
        .filter(|log| {
            log.record
                .trace_context()
                .is_some_and(|cx| cx.span_id.to_string() == span_id)
        })
        .collect();
    let body = |log: &&opentelemetry_sdk::logs::in_memory_exporter::LogDataWithResource| {
        format!("{:?}", log.record.body())
    };
    assert!(
        mine.iter()
            .any(|log| body(log).contains("calling downstream")),
        "{mine:#?}"
    );
    assert!(
        mine.iter()
            .any(|log| body(log).contains("request completed")),
        "{mine:#?}"
    );
    assert!(
        mine.iter()
            .all(|log| log.record.trace_context().unwrap().trace_id.to_string() == TRACE)
    );

    // The outgoing call continues the trace, parented by the server span,
    // with the same correlation ID (W3C Trace Context §3.2).
    assert_eq!(echoed, format!("00-{TRACE}-{span_id}-01 obs-trace-1"));
}

#[tokio::test]
async fn a_rejected_token_and_a_rate_limit_get_their_access_line_with_the_deciding_layer() {
    // One request per minute per client: the second is refused.
    let config = Config {
        rate_limit: Quota::per_minute(1).with_burst(1),
        ..Config::default()
    };
    let addr = serve(&config).await;

    let (status, _) = get(
        addr,
        "/products",
        &[
            ("x-request-id", "obs-401"),
            ("authorization", "Bearer not.a.token"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let access = access_line("obs-401").await;
    assert_eq!(access["http.response.status_code"], 401);
    assert_eq!(access["tower_edge.layer"], "jwt_auth");
    assert_eq!(access["tower_edge.reason"], "invalid_token");
    let server = server_span("obs-401").await;
    assert_eq!(
        access["trace_id"],
        server.span_context.trace_id().to_string()
    );

    let (first, _) = get(addr, "/health", &[("x-request-id", "obs-429-a")]).await;
    assert_eq!(first, StatusCode::OK);
    let (second, _) = get(addr, "/health", &[("x-request-id", "obs-429-b")]).await;
    assert_eq!(second, StatusCode::TOO_MANY_REQUESTS);
    let access = access_line("obs-429-b").await;
    assert_eq!(access["http.response.status_code"], 429);
    assert_eq!(access["tower_edge.layer"], "rate_limit");
    assert_eq!(access["tower_edge.reason"], "rate_limited");
    assert_eq!(access["tower_edge.policy"], "client");
    assert_eq!(access["client.address"], "127.0.0.1");
    assert_eq!(access["http.route"], "/health");
}

#[tokio::test]
async fn a_claim_with_a_newline_cannot_split_a_log_line() {
    let config = Config::default();
    let addr = serve(&config).await;
    let forged = "mallory\n{\"level\":\"ERROR\",\"message\":\"forged\"}";
    let token = common::token(&config, forged, "products:read", Duration::from_secs(60));
    let (status, _) = get(
        addr,
        "/call-out",
        &[
            ("x-request-id", "obs-newline"),
            ("authorization", &format!("Bearer {token}")),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    access_line("obs-newline").await;
    // `lines()` parses every line captured so far as one JSON object.
    let handler = lines_of("obs-newline")
        .into_iter()
        .find(|line| line["message"] == "calling downstream")
        .expect("the handler's line");
    assert_eq!(handler["subject"], forged, "kept whole, escaped");
    assert!(
        !lines().iter().any(|line| line["message"] == "forged"),
        "a forged line appeared"
    );
}

#[tokio::test]
async fn without_an_otel_layer_the_access_log_opens_the_request_span() {
    use tower_edge::access_log::AccessLogLayer;
    use tower_edge::correlation::CorrelationIdLayer;

    telemetry();
    // Correlation, access log, then a layer that learns the subject in its
    // `call` (as the JWT layer does) and logs there, synchronously.
    let service = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(AccessLogLayer::new())
        .map_request(|request: Request<Empty<Bytes>>| {
            tracing::Span::current().record("subject", "alice");
            tracing::info!("learnt in call");
            request
        })
        .service_fn(|_request: Request<Empty<Bytes>>| async {
            tracing::info!("in the handler, no otel");
            Ok::<_, std::convert::Infallible>(http::Response::new(Empty::<Bytes>::new()))
        });
    let request = Request::get("/plain")
        .header("x-request-id", "obs-no-otel")
        .body(Empty::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    response.into_body().collect().await.unwrap();

    let lines = lines_of("obs-no-otel");
    for message in [
        "learnt in call",
        "in the handler, no otel",
        "request completed",
    ] {
        let line = lines
            .iter()
            .find(|line| line["message"] == message)
            .unwrap_or_else(|| panic!("no line {message:?}: {lines:#?}"));
        assert_eq!(line["subject"], "alice", "{line:?}");
    }
}
