//! Unit tests of the idempotency layer in memory (paused time where time
//! matters). Requirement sources: draft-ietf-httpapi-idempotency-key-header-07
//! ("draft-07"), RFC 9457 (problem details), RFC 9110.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use tokio::sync::Notify;
use tower::{Layer, Service, ServiceExt};

use super::*;
use crate::Subject;
use crate::decision::{Decision, EdgeLayer, Reason};
use crate::rate_limit::PeerAddr;

type Req = Request<RequestBody<Full<Bytes>>>;

const KEY: &str = "\"k-1\"";

fn post(key: Option<&str>, body: &'static str) -> Request<Full<Bytes>> {
    let mut builder = Request::post("/orders");
    if let Some(key) = key {
        builder = builder.header("idempotency-key", key);
    }
    let mut request = builder
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([192, 0, 2, 7], 5000))));
    request
}

/// A handler that counts its runs and answers 201 with `order <n>`, a
/// `Location`, a `Set-Cookie`, and waits on `gate` first when given.
#[derive(Clone)]
struct Orders {
    runs: Arc<AtomicUsize>,
    gate: Option<Arc<Notify>>,
    status: StatusCode,
}

impl Orders {
    fn new() -> Self {
        Self {
            runs: Arc::new(AtomicUsize::new(0)),
            gate: None,
            status: StatusCode::CREATED,
        }
    }

    fn gated(gate: Arc<Notify>) -> Self {
        Self {
            gate: Some(gate),
            ..Self::new()
        }
    }

    fn runs(&self) -> usize {
        self.runs.load(Ordering::SeqCst)
    }
}

impl Service<Req> for Orders {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let n = self.runs.fetch_add(1, Ordering::SeqCst) + 1;
        let gate = self.gate.clone();
        let status = self.status;
        Box::pin(async move {
            let body = request.into_body().collect().await.unwrap().to_bytes();
            if let Some(gate) = gate {
                gate.notified().await;
            }
            let mut response = Response::new(Full::new(Bytes::from(format!(
                "order {n} of {}",
                String::from_utf8_lossy(&body)
            ))));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(
                "location",
                HeaderValue::from_str(&format!("/orders/{n}")).unwrap(),
            );
            headers.insert("content-type", HeaderValue::from_static("text/plain"));
            headers.insert("set-cookie", HeaderValue::from_static("session=secret"));
            headers.insert("x-private", HeaderValue::from_static("not replayed"));
            Ok(response)
        })
    }
}

async fn body<B: http_body::Body<Data = Bytes>>(response: Response<B>) -> Bytes
where
    B::Error: std::fmt::Debug,
{
    response.into_body().collect().await.unwrap().to_bytes()
}

fn decision<B>(response: &Response<B>) -> Option<&Decision> {
    response.extensions().get::<Decision>()
}

// draft-07 §2.6: a completed key replays the first outcome; ours: status,
// allowlisted headers and body byte for byte, never Set-Cookie, marked.
#[tokio::test]
async fn replay_is_byte_identical_and_marked_without_set_cookie() {
    let handler = Orders::new();
    let service = IdempotencyLayer::new().layer(handler.clone());
    let first = service
        .clone()
        .oneshot(post(Some(KEY), "{\"q\":2}"))
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(first.headers()["set-cookie"], "session=secret");
    let first_body = body(first).await;
    let retry = service
        .clone()
        .oneshot(post(Some(KEY), "{\"q\":2}"))
        .await
        .unwrap();
    assert_eq!(handler.runs(), 1);
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.headers()["location"], "/orders/1");
    assert_eq!(retry.headers()["content-type"], "text/plain");
    assert!(retry.headers().get("set-cookie").is_none());
    assert!(retry.headers().get("x-private").is_none());
    let d = decision(&retry).unwrap();
    assert_eq!(
        (d.layer(), d.reason(), d.is_answer()),
        (EdgeLayer::Idempotency, Reason::Replayed, true)
    );
    assert_eq!(body(retry).await, first_body);
    assert_eq!(first_body, "order 1 of {\"q\":2}");
}

// draft-07 §2.7: exactly one execution per key; 50 concurrent requests
// with one key run the handler once, whichever waits or conflicts.
#[tokio::test(start_paused = true)]
async fn fifty_concurrent_requests_with_one_key_run_the_handler_once() {
    for in_flight in [InFlight::Wait(Duration::from_secs(30)), InFlight::Conflict] {
        let gate = Arc::new(Notify::new());
        let handler = Orders::gated(Arc::clone(&gate));
        let service = IdempotencyLayer::builder()
            .in_flight(in_flight)
            .build()
            .unwrap()
            .layer(handler.clone());
        let tasks: Vec<_> = (0..50)
            .map(|_| tokio::spawn(service.clone().oneshot(post(Some(KEY), "same"))))
            .collect();
        // Let every request reach the store, then finish the first.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.notify_one();
        let mut statuses = Vec::new();
        let mut bodies = Vec::new();
        for task in tasks {
            let response = task.await.unwrap().unwrap();
            statuses.push(response.status());
            if response.status() == StatusCode::CREATED {
                bodies.push(body(response).await);
            }
        }
        assert_eq!(handler.runs(), 1, "{in_flight:?}");
        assert!(bodies.iter().all(|b| b == "order 1 of same"));
        match in_flight {
            InFlight::Conflict => {
                assert_eq!(bodies.len(), 1);
                assert_eq!(
                    statuses
                        .iter()
                        .filter(|s| **s == StatusCode::CONFLICT)
                        .count(),
                    49
                );
            }
            _ => assert_eq!(bodies.len(), 50),
        }
    }
}

// draft-07 §2.7: 409 while the first request is still running, with
// Retry-After (RFC 9110 §10.2.3); problem+json (RFC 9457 §3).
#[tokio::test(start_paused = true)]
async fn duplicate_in_flight_gets_409_with_retry_after() {
    let gate = Arc::new(Notify::new());
    let handler = Orders::gated(Arc::clone(&gate));
    let service = IdempotencyLayer::builder()
        .retry_after(Duration::from_millis(2500))
        .build()
        .unwrap()
        .layer(handler.clone());
    let first = tokio::spawn(service.clone().oneshot(post(Some(KEY), "a")));
    tokio::time::sleep(Duration::from_millis(1)).await;
    let dup = service.clone().oneshot(post(Some(KEY), "a")).await.unwrap();
    assert_eq!(dup.status(), StatusCode::CONFLICT);
    assert_eq!(dup.headers()["retry-after"], "3");
    assert_eq!(dup.headers()["content-type"], "application/problem+json");
    assert_eq!(decision(&dup).unwrap().reason(), Reason::RequestInFlight);
    // Another payload while in flight: the fingerprint is checked first.
    let other = service.clone().oneshot(post(Some(KEY), "b")).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    gate.notify_one();
    assert_eq!(first.await.unwrap().unwrap().status(), StatusCode::CREATED);
    assert_eq!(handler.runs(), 1);
}

// draft-07 §2.7: a key reused with another payload → 422 problem+json,
// never a replay of the other payload's outcome.
#[tokio::test]
async fn another_body_with_the_same_key_gets_422() {
    let handler = Orders::new();
    let service = IdempotencyLayer::new().layer(handler.clone());
    service
        .clone()
        .oneshot(post(Some(KEY), "one"))
        .await
        .unwrap();
    let other = service
        .clone()
        .oneshot(post(Some(KEY), "two"))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(other.headers()["content-type"], "application/problem+json");
    assert_eq!(decision(&other).unwrap().reason(), Reason::KeyReused);
    let json: serde_json::Value = serde_json::from_slice(&body(other).await).unwrap();
    assert_eq!(json["status"], 422);
    // Another path is another request too.
    let mut elsewhere = post(Some(KEY), "one");
    *elsewhere.uri_mut() = "/orders?x=1".parse().unwrap();
    let elsewhere = service.clone().oneshot(elsewhere).await.unwrap();
    assert_eq!(elsewhere.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(handler.runs(), 1);
}

// A key is scoped by principal: two subjects with the same key run twice
// and never see each other's outcome.
#[tokio::test]
async fn two_subjects_with_the_same_key_run_twice() {
    let handler = Orders::new();
    let service = IdempotencyLayer::new().layer(handler.clone());
    let as_subject = |s: &str| {
        let mut r = post(Some(KEY), "x");
        r.extensions_mut().insert(Subject::new(s));
        r
    };
    let alice = service.clone().oneshot(as_subject("alice")).await.unwrap();
    let bob = service.clone().oneshot(as_subject("bob")).await.unwrap();
    assert_eq!(handler.runs(), 2);
    assert!(bob.headers().get("idempotent-replayed").is_none());
    assert_eq!(body(alice).await, "order 1 of x");
    assert_eq!(body(bob).await, "order 2 of x");
    // Same IP, no subject: a third scope.
    service.clone().oneshot(post(Some(KEY), "x")).await.unwrap();
    assert_eq!(handler.runs(), 3);
    // Another IP: a fourth.
    let mut other_ip = post(Some(KEY), "x");
    other_ip
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([198, 51, 100, 1], 5000))));
    service.clone().oneshot(other_ip).await.unwrap();
    assert_eq!(handler.runs(), 4);
}

// A crashed holder's lease expires and frees the key; the fencing token
// refuses its late completion, so the newer outcome is the one replayed.
#[tokio::test(start_paused = true)]
async fn lease_expiry_frees_the_key_and_the_fence_refuses_a_late_completion() {
    let gate = Arc::new(Notify::new());
    let slow = Orders::gated(Arc::clone(&gate));
    let store = MemoryStore::new();
    let layer = IdempotencyLayer::builder()
        .store(store.clone())
        .lease(Duration::from_secs(10))
        .build()
        .unwrap();
    // The first holder stalls (a replica that stopped mid-request).
    let first = tokio::spawn(layer.layer(slow.clone()).oneshot(post(Some(KEY), "p")));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(slow.runs(), 1);
    let fast = Orders::new();
    let blocked = layer
        .layer(fast.clone())
        .oneshot(post(Some(KEY), "p"))
        .await
        .unwrap();
    assert_eq!(blocked.status(), StatusCode::CONFLICT);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let second = layer
        .layer(fast.clone())
        .oneshot(post(Some(KEY), "p"))
        .await
        .unwrap();
    assert_eq!(fast.runs(), 1);
    let d = decision(&second).unwrap();
    assert_eq!((d.reason(), d.is_answer()), (Reason::LeaseExpired, false));
    assert_eq!(body(second).await, "order 1 of p");
    // The old holder completes late: refused by the fence.
    gate.notify_one();
    let late = first.await.unwrap().unwrap();
    assert_eq!(decision(&late).unwrap().reason(), Reason::LeaseExpired);
    assert_eq!(body(late).await, "order 1 of p");
    // A retry replays the newer outcome.
    let third = layer
        .layer(Orders::new())
        .oneshot(post(Some(KEY), "p"))
        .await
        .unwrap();
    assert_eq!(third.headers()["location"], "/orders/1");
    assert_eq!(third.headers()["idempotent-replayed"], "true");
    assert_eq!(fast.runs(), 1);
}

fn streamed(chunks: usize) -> Request<StreamBody<tokio_stream_like::Chunks>> {
    let mut request = Request::post("/orders")
        .header("idempotency-key", KEY)
        .body(StreamBody::new(tokio_stream_like::Chunks(chunks)))
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([192, 0, 2, 7], 5000))));
    request
}

/// A body of `n` 1 KiB chunks and no size hint (chunked transfer coding).
mod tokio_stream_like {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use bytes::Bytes;
    use http_body::Frame;

    pub(super) struct Chunks(pub(super) usize);

    impl tokio_stream::Stream for Chunks {
        type Item = Result<Frame<Bytes>, std::convert::Infallible>;

        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            if self.0 == 0 {
                return Poll::Ready(None);
            }
            self.0 -= 1;
            Poll::Ready(Some(Ok(Frame::data(Bytes::from(vec![b'x'; 1024])))))
        }
    }
}

// RFC 9110 §15.5.14: a body over the buffering cap → 413 problem+json,
// with a known length or streamed; the handler never runs.
#[tokio::test]
async fn body_over_the_cap_gets_413() {
    let handler = Orders::new();
    let layer = IdempotencyLayer::builder()
        .max_body_bytes(4096)
        .build()
        .unwrap();
    let sized = layer
        .layer(handler.clone())
        .oneshot({
            let mut r = post(Some(KEY), "");
            *r.body_mut() = Full::new(Bytes::from(vec![b'x'; 4097]));
            r
        })
        .await
        .unwrap();
    assert_eq!(sized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(sized.headers()["content-type"], "application/problem+json");
    assert_eq!(decision(&sized).unwrap().reason(), Reason::ContentTooLarge);
    let streaming_handler = tower::service_fn(
        |_r: Request<RequestBody<StreamBody<tokio_stream_like::Chunks>>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        },
    );
    let svc = layer.layer(streaming_handler);
    let over = svc.clone().oneshot(streamed(5)).await.unwrap();
    assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let within = svc.oneshot(streamed(4)).await.unwrap();
    assert_eq!(within.status(), StatusCode::OK);
    assert_eq!(handler.runs(), 0);
}

// draft-07 §2.7: a required key missing → 400; §2.1: a malformed value or
// two field lines → 400; all problem+json.
#[tokio::test]
async fn missing_malformed_or_repeated_keys_get_400_on_required_routes() {
    let handler = Orders::new();
    let layer = IdempotencyLayer::builder()
        .route(Route::prefix("/orders"))
        .route(Route::exact("/notes").key_optional())
        .build()
        .unwrap();
    let svc = layer.layer(handler.clone());
    let missing = svc.clone().oneshot(post(None, "x")).await.unwrap();
    assert_eq!(missing.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        decision(&missing).unwrap().reason(),
        Reason::MissingIdempotencyKey
    );
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    let malformed = svc
        .clone()
        .oneshot(post(Some("\"open"), "x"))
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        decision(&malformed).unwrap().reason(),
        Reason::InvalidIdempotencyKey
    );
    let mut twice = post(Some(KEY), "x");
    twice
        .headers_mut()
        .append("idempotency-key", HeaderValue::from_static("\"k-2\""));
    assert_eq!(
        svc.clone().oneshot(twice).await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let long = format!("\"{}\"", "a".repeat(256));
    assert_eq!(
        svc.clone()
            .oneshot(post(Some(&long), "x"))
            .await
            .unwrap()
            .status(),
        StatusCode::BAD_REQUEST
    );
    assert_eq!(handler.runs(), 0);
    // Optional route: runs without a key, each time.
    for _ in 0..2 {
        let mut note = post(None, "x");
        *note.uri_mut() = "/notes".parse().unwrap();
        assert_eq!(
            svc.clone().oneshot(note).await.unwrap().status(),
            StatusCode::CREATED
        );
    }
    // GET and unlisted paths pass through, key or not.
    let mut get = post(Some(KEY), "x");
    *get.method_mut() = http::Method::GET;
    svc.clone().oneshot(get).await.unwrap();
    let mut other = post(None, "x");
    *other.uri_mut() = "/other".parse().unwrap();
    svc.clone().oneshot(other).await.unwrap();
    assert_eq!(handler.runs(), 4);
}

// Stored outcomes: a 5xx releases the key, so the retry runs again; so
// do 409 and 429 (a retry may succeed).
#[tokio::test]
async fn server_errors_and_retryable_statuses_release_the_key() {
    for status in [
        StatusCode::INTERNAL_SERVER_ERROR,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::CONFLICT,
    ] {
        let mut handler = Orders::new();
        handler.status = status;
        let svc = IdempotencyLayer::new().layer(handler.clone());
        let first = svc.clone().oneshot(post(Some(KEY), "x")).await.unwrap();
        assert_eq!(first.status(), status);
        let retry = svc.clone().oneshot(post(Some(KEY), "x")).await.unwrap();
        assert!(retry.headers().get("idempotent-replayed").is_none());
        assert_eq!(handler.runs(), 2, "{status}");
    }
    // A 4xx is stored by default.
    let mut handler = Orders::new();
    handler.status = StatusCode::NOT_FOUND;
    let svc = IdempotencyLayer::new().layer(handler.clone());
    svc.clone().oneshot(post(Some(KEY), "x")).await.unwrap();
    let retry = svc.clone().oneshot(post(Some(KEY), "x")).await.unwrap();
    assert_eq!(retry.status(), StatusCode::NOT_FOUND);
    assert_eq!(handler.runs(), 1);
}

// A handler error or a dropped request releases the key.
#[tokio::test(start_paused = true)]
async fn handler_errors_and_dropped_requests_release_the_key() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&calls);
    let failing = tower::service_fn(move |_r: Req| {
        let n = c.fetch_add(1, Ordering::SeqCst);
        async move {
            if n == 0 {
                Err("handler failed")
            } else {
                Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
            }
        }
    });
    let svc = IdempotencyLayer::new().layer(failing);
    assert!(svc.clone().oneshot(post(Some(KEY), "x")).await.is_err());
    assert_eq!(
        svc.clone()
            .oneshot(post(Some(KEY), "x"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let store = MemoryStore::new();
    let layer = IdempotencyLayer::builder()
        .store(store.clone())
        .build()
        .unwrap();
    let handler = Orders::gated(Arc::new(Notify::new()));
    {
        let mut dropped =
            std::pin::pin!(layer.layer(handler.clone()).oneshot(post(Some(KEY), "x")));
        assert!(poll_once(dropped.as_mut()).await.is_none());
        assert_eq!(handler.runs(), 1);
        assert_eq!(store.len(), 1);
    }
    // Dropped mid-request: released at once, not after the lease.
    assert_eq!(store.len(), 0);
    let retry = layer
        .layer(Orders::new())
        .oneshot(post(Some(KEY), "x"))
        .await
        .unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(retry.headers().get("idempotent-replayed").is_none());
}

async fn poll_once<F: Future + Unpin>(f: F) -> Option<F::Output> {
    let mut f = f;
    std::future::poll_fn(|cx| match std::pin::Pin::new(&mut f).poll(cx) {
        std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// A store that always fails (Redis unreachable).
struct Down;

impl IdempotencyStore for Down {
    fn claim(&self, _: &StoreKey, _: &Fingerprint, _: Duration) -> StoreFuture<Claim> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
    fn complete(
        &self,
        _: &StoreKey,
        _: &Fingerprint,
        _: FencingToken,
        _: Arc<StoredResponse>,
        _: Duration,
    ) -> StoreFuture<Completion> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
    fn release(&self, _: &StoreKey, _: FencingToken) -> StoreFuture<()> {
        StoreFuture::ready(Err(StoreError::new("down")))
    }
}

// Store unreachable: fail open serves without idempotency (counted,
// marked); fail closed answers 503 problem+json with Retry-After (RFC 9110
// §15.6.4).
#[tokio::test]
async fn store_failure_fails_open_or_closed_per_configuration() {
    let handler = Orders::new();
    let open = IdempotencyLayer::builder().store(Down).build().unwrap();
    let svc = open.layer(handler.clone());
    for _ in 0..2 {
        let response = svc.clone().oneshot(post(Some(KEY), "x")).await.unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        let d = decision(&response).unwrap();
        assert_eq!(
            (d.reason(), d.is_answer()),
            (Reason::StoreUnavailable, false)
        );
    }
    assert_eq!(handler.runs(), 2);
    assert_eq!(open.store_errors(), 2);
    let closed = IdempotencyLayer::builder()
        .store(Down)
        .on_store_error(OnStoreError::Reject)
        .build()
        .unwrap();
    let response = closed
        .layer(handler.clone())
        .oneshot(post(Some(KEY), "x"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        decision(&response).unwrap().reason(),
        Reason::StoreUnavailable
    );
    assert_eq!(handler.runs(), 2);
}

fn grpc_call(key: &'static str, message: &'static [u8]) -> Request<Full<Bytes>> {
    let mut request = Request::post("/shop.Orders/Create")
        .version(http::Version::HTTP_2)
        .header("content-type", "application/grpc")
        .header("idempotency-key", key)
        .body(Full::new(Bytes::from_static(message)))
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([192, 0, 2, 7], 5000))));
    request
}

// gRPC over HTTP/2: the key is `idempotency-key` metadata; the replay is
// the stored message and trailers; rejections are trailers-only with a
// grpc-status, never an HTTP error status.
#[tokio::test(start_paused = true)]
async fn grpc_calls_replay_message_and_trailers_and_get_grpc_codes() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let gate = Arc::new(Notify::new());
    let wait = Arc::clone(&gate);
    let handler = tower::service_fn(move |request: Request<RequestBody<Full<Bytes>>>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let wait = Arc::clone(&wait);
        async move {
            let message = request.into_body().collect().await.unwrap().to_bytes();
            if message.as_ref() == b"slow" {
                wait.notified().await;
            }
            let mut trailers = http::HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            trailers.insert("x-order", HeaderValue::from_str(&n.to_string()).unwrap());
            let frames = vec![
                Ok::<_, Infallible>(http_body::Frame::data(Bytes::from_static(
                    b"\0\0\0\0\x02ok",
                ))),
                Ok(http_body::Frame::trailers(trailers)),
            ];
            let mut response = Response::new(StreamBody::new(tokio_stream::iter(frames)));
            response
                .headers_mut()
                .insert("content-type", HeaderValue::from_static("application/grpc"));
            Ok::<_, Infallible>(response)
        }
    });
    let svc = IdempotencyLayer::builder()
        .route(Route::exact("/shop.Orders/Create"))
        .build()
        .unwrap()
        .layer(handler);
    let first = svc.clone().oneshot(grpc_call("k", b"m")).await.unwrap();
    let first = first.into_body().collect().await.unwrap();
    let replay = svc.clone().oneshot(grpc_call("k", b"m")).await.unwrap();
    assert_eq!(replay.status(), StatusCode::OK);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replay = replay.into_body().collect().await.unwrap();
    assert_eq!(replay.trailers(), first.trailers());
    assert_eq!(replay.trailers().unwrap()["x-order"], "0");
    assert_eq!(replay.to_bytes(), first.to_bytes());
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let cases: [(Request<Full<Bytes>>, &str); 2] = [
        (grpc_call("k", b"other"), "9"),
        (
            {
                let mut r = grpc_call("k", b"m");
                r.headers_mut().remove("idempotency-key");
                r
            },
            "3",
        ),
    ];
    for (request, code) in cases {
        let response = svc.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["grpc-status"], code);
    }
    let slow = tokio::spawn(svc.clone().oneshot(grpc_call("s", b"slow")));
    tokio::time::sleep(Duration::from_millis(1)).await;
    let conflict = svc.clone().oneshot(grpc_call("s", b"slow")).await.unwrap();
    assert_eq!(conflict.status(), StatusCode::OK);
    assert_eq!(conflict.headers()["grpc-status"], "10");
    gate.notify_one();
    slow.await.unwrap().unwrap();
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

#[test]
fn bad_configuration_fails_at_build_naming_the_field() {
    let field = |b: IdempotencyLayerBuilder| b.build().unwrap_err().field();
    let b = IdempotencyLayer::builder;
    assert_eq!(field(b().methods([])), "methods");
    assert_eq!(field(b().route(Route::exact("orders"))), "route");
    assert_eq!(field(b().max_key_length(0)), "max_key_length");
    assert_eq!(field(b().max_body_bytes(0)), "max_body_bytes");
    assert_eq!(field(b().max_response_bytes(0)), "max_response_bytes");
    assert_eq!(field(b().lease(Duration::ZERO)), "lease");
    assert_eq!(field(b().retention(Duration::from_secs(1))), "lease");
    assert_eq!(
        field(b().in_flight(InFlight::Wait(Duration::ZERO))),
        "in_flight"
    );
    assert_eq!(field(b().retry_after(Duration::ZERO)), "retry_after");
    assert_eq!(field(b().trusted_proxies(["nope"])), "trusted_proxies");
    assert_eq!(
        field(b().stored_outcomes(StoredOutcomes::default().with(StatusCode::BAD_GATEWAY))),
        "stored_outcomes"
    );
    assert_eq!(
        field(b().replayed_headers(["Set-Cookie"])),
        "replayed_headers"
    );
    assert_eq!(
        field(b().replayed_headers(["bad header"])),
        "replayed_headers"
    );
    assert_eq!(
        MemoryStore::builder()
            .max_keys(0)
            .build()
            .unwrap_err()
            .field(),
        "max_keys"
    );
    assert_eq!(
        MemoryStore::builder()
            .max_bytes(0)
            .build()
            .unwrap_err()
            .field(),
        "max_bytes"
    );
}

fn skey(n: u8) -> StoreKey {
    StoreKey::new(
        &Scope::from_bytes(&[n]),
        &IdempotencyKey::parse(b"k", 8).unwrap(),
    )
}

fn stored(len: usize) -> Arc<StoredResponse> {
    Arc::new(StoredResponse::new(
        StatusCode::OK,
        http::HeaderMap::new(),
        Bytes::from(vec![0; len]),
        None,
    ))
}

fn ready<T>(f: StoreFuture<T>) -> T {
    f.into_ready().ok().unwrap().unwrap()
}

// Memory bounded under hostile input: a key cap (oldest completed key
// evicted first, never a key in flight) and a byte cap.
#[tokio::test(start_paused = true)]
async fn memory_store_is_bounded_in_keys_and_bytes() {
    let fp = Fingerprint::from_bytes([1; 32]);
    let lease = Duration::from_secs(10);
    let day = Duration::from_secs(86_400);
    let store = MemoryStore::builder()
        .max_keys(3)
        .max_bytes(10_000)
        .build()
        .unwrap();
    for n in 0..3 {
        let Claim::Acquired { token, .. } = ready(store.claim(&skey(n), &fp, lease)) else {
            panic!()
        };
        if n < 2 {
            assert_eq!(
                ready(store.complete(&skey(n), &fp, token, stored(100), day)),
                Completion::Stored
            );
        }
    }
    // Full: the oldest completed key (0) goes, the one in flight (2) stays.
    assert!(matches!(
        ready(store.claim(&skey(3), &fp, lease)),
        Claim::Acquired { .. }
    ));
    assert_eq!(store.len(), 3);
    assert!(matches!(
        ready(store.claim(&skey(2), &fp, lease)),
        Claim::InFlight
    ));
    assert!(matches!(
        ready(store.claim(&skey(1), &fp, lease)),
        Claim::Completed(_)
    ));
    assert!(matches!(
        ready(store.claim(&skey(0), &fp, lease)),
        Claim::Acquired { .. }
    ));
    // Now 0, 2, 3 in flight and 1 evicted: every key in flight → error.
    assert_eq!(store.len(), 3);
    assert!(
        store
            .claim(&skey(9), &fp, lease)
            .into_ready()
            .ok()
            .unwrap()
            .is_err()
    );
    // Leases expire: the keys are free again.
    tokio::time::advance(lease).await;
    assert!(matches!(
        ready(store.claim(&skey(9), &fp, lease)),
        Claim::Acquired { .. }
    ));
    assert!(store.len() <= 3);

    // Bytes: outcomes evict older ones to fit; one over the cap is refused.
    let store = MemoryStore::builder().max_bytes(1000).build().unwrap();
    for n in 0..5 {
        let Claim::Acquired { token, .. } = ready(store.claim(&skey(n), &fp, lease)) else {
            panic!()
        };
        assert_eq!(
            ready(store.complete(&skey(n), &fp, token, stored(300), day)),
            Completion::Stored
        );
        assert!(store.bytes() <= 1000);
    }
    let Claim::Acquired { token, .. } = ready(store.claim(&skey(7), &fp, lease)) else {
        panic!()
    };
    assert!(
        store
            .complete(&skey(7), &fp, token, stored(2000), day)
            .into_ready()
            .ok()
            .unwrap()
            .is_err()
    );
    assert!(matches!(
        ready(store.claim(&skey(7), &fp, lease)),
        Claim::Acquired { .. }
    ));
    // Retention over: forgotten.
    tokio::time::advance(day).await;
    assert!(matches!(
        ready(store.claim(&skey(4), &fp, lease)),
        Claim::Acquired { .. }
    ));
}

// Another tower-edge layer's answer further in (a route's scope check)
// concerns this attempt, not the operation: the key is released.
#[tokio::test]
async fn answers_of_other_edge_layers_are_not_stored() {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&runs);
    let handler = tower::service_fn(move |_r: Req| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let mut response = Response::new(Full::new(Bytes::new()));
            if n == 0 {
                *response.status_mut() = StatusCode::FORBIDDEN;
                response
                    .extensions_mut()
                    .insert(Decision::new(EdgeLayer::JwtAuth, Reason::InsufficientScope));
            }
            Ok::<_, Infallible>(response)
        }
    });
    let svc = IdempotencyLayer::new().layer(handler);
    let first = svc.clone().oneshot(post(Some(KEY), "x")).await.unwrap();
    assert_eq!(first.status(), StatusCode::FORBIDDEN);
    let second = svc.clone().oneshot(post(Some(KEY), "x")).await.unwrap();
    assert_eq!(second.status(), StatusCode::OK);
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}
