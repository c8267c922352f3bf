//! Fault injection: what the layers do when what they wrap fails — a
//! handler that panics, a service error, a body that fails mid-stream, a
//! key source that cannot answer.
//!
//! All layers: never a panic of ours, never a 500 for the client's mistake
//! (RFC 9110 §15.5: a client error is a 4xx; §15.6: a 5xx is the server's);
//! the correlation ID is on every response (put the correlation layer
//! outermost).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower::{ServiceBuilder, ServiceExt};
use tower_edge::cache_headers::CacheHeadersLayer;
use tower_edge::correlation::CorrelationIdLayer;
use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer, KeyLookup, KeySource, VerificationKey};
use tower_edge::otel::OtelLayer;
use tower_edge::rate_limit::{LimitRateLayer, PeerAddr, Quota};
use tower_http::catch_panic::CatchPanicLayer;

/// A body that yields one chunk, then fails; it may claim an exact length.
struct FailingBody {
    sent: bool,
    exact: Option<u64>,
}

#[derive(Debug)]
struct BodyFailed;

impl std::fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the body failed")
    }
}

impl std::error::Error for BodyFailed {}

impl Body for FailingBody {
    type Data = Bytes;
    type Error = BodyFailed;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyFailed>>> {
        if self.sent {
            return Poll::Ready(Some(Err(BodyFailed)));
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(b"part")))))
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

fn get(path: &str) -> Request<String> {
    let mut request = Request::builder()
        .uri(path)
        .header("x-request-id", "fault-1")
        .body(String::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr("192.0.2.1:5000".parse().unwrap()));
    request
}

// A handler that panics: with tower-http's CatchPanicLayer inside the
// correlation layer, the client gets a 500 that still carries its
// correlation ID (and a generated one when it sent none).
#[tokio::test]
async fn a_panicking_handler_gives_a_500_with_the_correlation_id() {
    let service = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(CatchPanicLayer::new())
        .service_fn(|_req: Request<String>| async move {
            if true {
                panic!("handler bug");
            }
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    let response = service.clone().oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-request-id"], "fault-1");

    let response = service.oneshot(Request::new(String::new())).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-request-id"].len(), 36);
}

#[derive(Debug)]
struct HandlerError;

impl std::fmt::Display for HandlerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the handler failed")
    }
}

impl std::error::Error for HandlerError {}

// The inner service returns Err: every layer of the full stack passes it
// through unchanged (hyper then closes the connection), none panics.
#[tokio::test]
async fn a_service_error_propagates_through_the_whole_stack() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let secret = b"an HS256 secret of at least 32 bytes!";
    let service = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(
            OtelLayer::builder()
                .tracer_provider(&provider)
                .build()
                .unwrap(),
        )
        .layer(LimitRateLayer::new(Quota::per_second(100)))
        .layer(
            JwtAuthLayer::builder()
                .key(VerificationKey::hmac(Algorithm::HS256, secret).unwrap())
                .optional()
                .build()
                .unwrap(),
        )
        .layer(CacheHeadersLayer::new())
        .service_fn(
            |_req: Request<String>| async move { Err::<Response<String>, _>(HandlerError) },
        );
    let error = service.oneshot(get("/")).await.unwrap_err();
    assert_eq!(error.to_string(), "the handler failed");
    // The server span ended, as an error.
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1);
    assert!(
        spans[0]
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "error.type"),
        "{:?}",
        spans[0].attributes
    );
}

// A body of known length fails while cache_headers buffers it for its
// ETag: the client gets a clean 500 (problem+json) instead of half a body,
// still carrying the correlation ID.
#[tokio::test]
async fn a_failing_body_while_buffering_for_the_etag_gives_a_500() {
    let service = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(CacheHeadersLayer::new())
        .service_fn(|_req: Request<String>| async move {
            Ok::<_, Infallible>(Response::new(FailingBody {
                sent: false,
                exact: Some(8),
            }))
        });
    let response = service.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-request-id"], "fault-1");
    assert!(!response.headers().contains_key("etag"));
    assert_eq!(
        response.headers()["content-type"],
        HeaderValue::from_static("application/problem+json")
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(
        String::from_utf8_lossy(&body).contains("could not be produced"),
        "{body:?}"
    );
}

// A streamed body (unknown length) is not buffered: its error reaches the
// server unchanged, after the chunk that was sent.
#[tokio::test]
async fn a_failing_streamed_body_passes_through_cache_headers() {
    let service = ServiceBuilder::new()
        .layer(CacheHeadersLayer::new())
        .service_fn(|_req: Request<String>| async move {
            Ok::<_, Infallible>(Response::new(FailingBody {
                sent: false,
                exact: None,
            }))
        });
    let response = service.oneshot(get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "part");
    let error = body.frame().await.unwrap().unwrap_err();
    assert_eq!(error.to_string(), "the body failed");
}

// A body failing mid-stream through otel: the span ends when the error
// comes out (not only when the body is dropped), marked with `error.type`.
#[tokio::test]
async fn a_failing_body_ends_the_otel_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let service = ServiceBuilder::new()
        .layer(
            OtelLayer::builder()
                .tracer_provider(&provider)
                .build()
                .unwrap(),
        )
        .service_fn(|_req: Request<String>| async move {
            Ok::<_, Infallible>(Response::new(FailingBody {
                sent: false,
                exact: None,
            }))
        });
    let response = service.oneshot(get("/")).await.unwrap();
    let mut body = response.into_body();
    assert!(body.frame().await.unwrap().is_ok());
    assert!(exporter.get_finished_spans().unwrap().is_empty());
    assert!(body.frame().await.unwrap().is_err());
    let spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1, "the span must end on the body error");
    assert!(
        spans[0]
            .attributes
            .iter()
            .any(|kv| kv.key.as_str() == "error.type"),
        "{:?}",
        spans[0].attributes
    );
    drop(body);
    assert_eq!(exporter.get_finished_spans().unwrap().len(), 1);
}

/// A remote key source whose every fetch fails.
struct FailingKeySource {
    refreshes: Arc<std::sync::atomic::AtomicUsize>,
}

impl KeySource for FailingKeySource {
    fn find(&self, _kid: Option<&str>, _alg: Algorithm) -> KeyLookup {
        KeyLookup::UnknownKid
    }

    fn refresh(
        &self,
        _kid: Option<&str>,
        _alg: Algorithm,
    ) -> Option<tower_edge::jwt_auth::KeyRefresh> {
        self.refreshes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(Box::pin(async {
            // The fetch fails after a while: nothing new to answer with.
            tokio::task::yield_now().await;
            KeyLookup::UnknownKid
        }))
    }
}

// A key source that cannot answer (its fetches fail): the token is
// rejected with 401 invalid_token — the client is not told the server is
// broken with a 500, and nothing panics.
#[tokio::test]
async fn a_failing_key_source_rejects_with_401() {
    let refreshes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let layer = JwtAuthLayer::builder()
        .key_source(FailingKeySource {
            refreshes: Arc::clone(&refreshes),
        })
        .algorithms([Algorithm::HS256])
        .build()
        .unwrap();
    let service = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(layer)
        .service_fn(|_req: Request<String>| async move {
            Ok::<_, Infallible>(Response::new(String::new()))
        });
    // jsonwebtoken signs with its process default, which a build with both
    // of its providers (tower-edge's `aws-lc-rs` feature) does not have.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": "u", "exp": 4_000_000_000u64 }),
        &jsonwebtoken::EncodingKey::from_secret(b"whatever secret of 32 bytes......").unwrap(),
    )
    .unwrap();
    let mut request = get("/");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["x-request-id"], "fault-1");
    let challenge = response.headers()["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(r#"error="invalid_token""#),
        "{challenge}"
    );
    assert_eq!(refreshes.load(std::sync::atomic::Ordering::SeqCst), 1);
}

// A key source that answers with a key of another algorithm than the
// token's (a misconfigured or compromised source): rejected, never a panic.
#[tokio::test]
async fn a_key_source_with_the_wrong_algorithm_rejects_with_401() {
    let rsa = Arc::new(
        VerificationKey::rsa_pem(
            Algorithm::RS256,
            include_bytes!("../src/jwt_auth/testdata/rsa_public.pem"),
        )
        .unwrap(),
    );
    let layer = JwtAuthLayer::builder()
        .key_source(move |_kid: Option<&str>, _alg: Algorithm| KeyLookup::Found(Arc::clone(&rsa)))
        .algorithms([Algorithm::HS256, Algorithm::RS256])
        .build()
        .unwrap();
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service_fn(|_req: Request<String>| async move {
                Ok::<_, Infallible>(Response::new(String::new()))
            });
    // HS256 MACed with the RSA public key as the secret (CVE-2015-9235 class).
    // jsonwebtoken signs with its process default, which a build with both
    // of its providers (tower-edge's `aws-lc-rs` feature) does not have.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({ "sub": "u", "exp": 4_000_000_000u64 }),
        &jsonwebtoken::EncodingKey::from_secret(include_bytes!(
            "../src/jwt_auth/testdata/rsa_public.pem"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut request = get("/");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}
