//! Log lines and the correlation ID, with one global capturing subscriber.
//!
//! These tests live in their own test binary with a process-wide subscriber:
//! thread-local subscribers (`set_default`) race with other tests' subscribers
//! over tracing's global interest cache and lose lines now and then.

use std::convert::Infallible;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::Full;
use tower::{ServiceBuilder, ServiceExt};
use tower_edge::correlation::CorrelationIdLayer;

type Body = Full<Bytes>;

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

/// Installs the global subscriber once and returns everything logged so far.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .init();
        captured
    })
}

/// The captured lines that contain `marker`.
fn lines_with(marker: &str) -> Vec<String> {
    let out = String::from_utf8(captured().0.lock().unwrap().clone()).unwrap();
    out.lines()
        .filter(|l| l.contains(marker))
        .map(str::to_owned)
        .collect()
}

fn request_with(value: &'static str) -> Request<Body> {
    let mut req = Request::new(Body::default());
    req.headers_mut()
        .insert("x-request-id", HeaderValue::from_static(value));
    req
}

// The final ID is a field on the request's span, so every log
// line inside carries it — including lines logged after an await point.
#[tokio::test]
async fn every_log_line_inside_the_handler_carries_the_id() {
    captured();
    let svc = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .service_fn(|_req: Request<Body>| async move {
            tracing::info!("marker-a before await");
            tokio::task::yield_now().await;
            tracing::warn!("marker-a after await");
            Ok::<_, Infallible>(Response::new(Body::default()))
        });
    svc.oneshot(request_with("log-me-42")).await.unwrap();
    let lines = lines_with("marker-a");
    assert_eq!(lines.len(), 2, "{lines:?}");
    for line in lines {
        assert!(
            line.contains("correlation_id=\"log-me-42\"")
                || line.contains("correlation_id=log-me-42"),
            "{line}"
        );
    }
}

// CWE-117 (log injection): the rejected value is never logged raw.
#[tokio::test]
async fn rejected_value_is_never_logged() {
    captured();
    let svc = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .service_fn(|_req: Request<Body>| async move {
            tracing::info!("marker-b inside");
            Ok::<_, Infallible>(Response::new(Body::default()))
        });
    svc.oneshot(request_with("evil<injected>value-marker-b"))
        .await
        .unwrap();
    let inside = lines_with("marker-b inside");
    assert_eq!(inside.len(), 1, "{inside:?}");
    assert!(
        lines_with("evil").is_empty(),
        "the rejected value reached the logs"
    );
    assert!(!lines_with("replacing an invalid incoming correlation id").is_empty());
}

#[tokio::test]
async fn span_can_be_turned_off() {
    captured();
    let layer = CorrelationIdLayer::builder().span(false).build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(layer)
        .service_fn(|_req: Request<Body>| async move {
            tracing::info!("marker-c inside");
            Ok::<_, Infallible>(Response::new(Body::default()))
        });
    svc.oneshot(request_with("no-span-c")).await.unwrap();
    let lines = lines_with("marker-c");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(!lines[0].contains("no-span-c"), "{lines:?}");
}
