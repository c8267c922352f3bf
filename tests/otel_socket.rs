//! OpenTelemetry over real sockets: a traceparent received by one server is
//! continued by its server span and carried, with the correlation ID, to the
//! next service by `PropagateCorrelationIdLayer`.

use std::net::SocketAddr;

use axum::extract::State;
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::KeyValue;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower::{ServiceBuilder, ServiceExt};
use tower_edge::correlation::{CorrelationIdLayer, PropagateCorrelationIdLayer};
use tower_edge::otel::OtelLayer;

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn listen(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Answers with the trace-context and correlation headers it received.
async fn downstream() -> SocketAddr {
    listen(axum::Router::new().route(
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
    ))
    .await
}

fn client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

#[derive(Clone)]
struct Front {
    downstream: SocketAddr,
}

#[tokio::test]
async fn trace_and_correlation_id_cross_two_hops() {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let otel = OtelLayer::builder()
        .tracer_provider(&provider)
        .propagator(TraceContextPropagator::new())
        .build()
        .unwrap();

    let front = Front {
        downstream: downstream().await,
    };
    let app = axum::Router::new()
        .route(
            "/call/{n}",
            axum::routing::get(|State(front): State<Front>| async move {
                // The handler passes neither the trace nor the ID by hand.
                let outgoing = ServiceBuilder::new()
                    .layer(
                        PropagateCorrelationIdLayer::new()
                            .with_propagator(TraceContextPropagator::new()),
                    )
                    .service(client());
                let uri = format!("http://{}/echo", front.downstream);
                let request = Request::get(uri).body(Empty::new()).unwrap();
                let response = outgoing.oneshot(request).await.unwrap();
                let body = response.into_body().collect().await.unwrap().to_bytes();
                String::from_utf8(body.to_vec()).unwrap()
            }),
        )
        .with_state(front)
        .layer(
            ServiceBuilder::new()
                .layer(CorrelationIdLayer::new())
                .layer(otel),
        );
    let addr = listen(app).await;

    let request = Request::get(format!("http://{addr}/call/7"))
        .header(
            "traceparent",
            format!("00-{PARENT_TRACE}-00f067aa0ba902b7-01"),
        )
        .header("x-request-id", "req-socket-1")
        .body(Empty::new())
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "req-socket-1");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();

    // The span ended before the last body frame was handed to hyper (the
    // body reported its end), so it is exported by now.
    let finished = spans.get_finished_spans().unwrap();
    assert_eq!(finished.len(), 1, "{finished:#?}");
    let server = &finished[0];
    assert_eq!(server.name, "GET /call/{n}");
    assert_eq!(server.span_context.trace_id().to_string(), PARENT_TRACE);
    assert!(
        server
            .attributes
            .contains(&KeyValue::new("correlation_id", "req-socket-1"))
    );
    // The next hop continues the same trace, parented by the server span.
    let expected = format!(
        "00-{PARENT_TRACE}-{}-01 req-socket-1",
        server.span_context.span_id()
    );
    assert_eq!(body, expected);
}
