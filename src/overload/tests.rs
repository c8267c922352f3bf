//! Unit tests of the overload layer: admission, shedding, permits,
//! per-key limits, partitions, the queue and configuration. The adaptive
//! limit's tests are in `tests/adaptive.rs`, those of per-key limits,
//! partitions and the queue in `tests/limits.rs`.

mod adaptive;
mod limits;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body::{Body as _, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{Service, ServiceExt};

use super::*;
use crate::Subject;
use crate::decision::{Decision, EdgeLayer, Reason};
use crate::rate_limit::{ClientIp, PeerAddr};

type Body = Full<Bytes>;

/// An inner service answering 200 "ok" at once, counting its calls.
#[derive(Clone, Default)]
struct Ok200(Arc<AtomicUsize>);

impl Service<Request<Body>> for Ok200 {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::default()).unwrap()
}

fn from(peer: &str) -> Request<Body> {
    let mut req = get("/");
    let peer: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(PeerAddr(peer));
    req
}

fn grpc(path: &str) -> Request<Body> {
    Request::post(path)
        .version(Version::HTTP_2)
        .header("content-type", "application/grpc")
        .body(Body::default())
        .unwrap()
}

/// Calls the service once; the call must answer on its first poll (no
/// waiting: nothing here sleeps or waits on another task).
fn call_now<S>(service: &mut S, request: Request<Body>) -> S::Response
where
    S: Service<Request<Body>, Error = Infallible>,
{
    let mut cx = Context::from_waker(std::task::Waker::noop());
    assert!(service.poll_ready(&mut cx).is_ready());
    let mut future = pin!(service.call(request));
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(response)) => response,
        Poll::Ready(Err(e)) => match e {},
        Poll::Pending => panic!("the layer made the request wait"),
    }
}

fn decision<B>(response: &Response<B>) -> &Decision {
    response
        .extensions()
        .get::<Decision>()
        .expect("a decision marker")
}

// tower #793 / vector #26457: a permit taken in `poll_ready` is held by
// every idle connection. Here `poll_ready` takes nothing.
#[test]
fn poll_ready_takes_no_permit() {
    let layer = OverloadLayer::new(2);
    let mut services: Vec<_> = (0..100).map(|_| layer.layer(Ok200::default())).collect();
    let mut cx = Context::from_waker(std::task::Waker::noop());
    for service in &mut services {
        assert!(service.poll_ready(&mut cx).is_ready());
    }
    assert_eq!(layer.stats().in_flight, 0);
    // And the limit still admits two requests from any of them.
    let a = call_now(&mut services[7], get("/"));
    let b = call_now(&mut services[42], get("/"));
    assert_eq!((a.status(), b.status()), (StatusCode::OK, StatusCode::OK));
    assert_eq!(layer.stats().in_flight, 2);
}

// Over the global limit: 503 (RFC 9110 §15.6.4) with Retry-After
// (RFC 9110 §10.2.3), as an RFC 9457 problem document, answered at once;
// the inner service is never called.
#[tokio::test]
async fn over_the_limit_is_503_problem_json_with_retry_after_at_once() {
    let layer = OverloadLayer::new(2);
    let inner = Ok200::default();
    let mut service = layer.layer(inner.clone());
    let held = [
        call_now(&mut service, get("/")),
        call_now(&mut service, get("/")),
    ];
    let shed = call_now(&mut service, get("/"));
    assert_eq!(
        inner.0.load(Ordering::SeqCst),
        2,
        "the shed request never reached the handler"
    );
    assert_eq!(shed.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(shed.headers()["content-type"], "application/problem+json");
    assert_eq!(shed.headers()["cache-control"], "no-store");
    let d = decision(&shed);
    assert_eq!(
        (d.layer(), d.reason()),
        (EdgeLayer::Overload, Reason::Overloaded)
    );
    assert_eq!(d.policy(), None);
    let body = shed.into_body().collect().await.unwrap().to_bytes();
    let doc: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(doc["status"], 503);
    let stats = layer.stats();
    assert_eq!((stats.in_flight, stats.shed_overloaded), (2, 1));
    drop(held);
    assert_eq!(layer.stats().in_flight, 0);
    assert_eq!(call_now(&mut service, get("/")).status(), StatusCode::OK);
}

// gRPC over HTTP/2: an overloaded server answers trailers-only
// UNAVAILABLE (14), never an HTTP 503 (gRPC over HTTP/2 protocol spec,
// "Responses"; gRPC status codes).
#[test]
fn grpc_overload_is_trailers_only_unavailable() {
    let layer = OverloadLayer::new(1);
    let mut service = layer.layer(Ok200::default());
    let _held = call_now(&mut service, grpc("/shop.Orders/Get"));
    let shed = call_now(&mut service, grpc("/shop.Orders/Get"));
    assert_eq!(shed.status(), StatusCode::OK);
    assert_eq!(shed.headers()["grpc-status"], "14");
    assert_eq!(shed.headers()["content-type"], "application/grpc");
    assert!(shed.body().is_end_stream());
}

// The permit lives until the response body ends: a streamed body holds
// it while frames remain, and gives it back at its end.
#[tokio::test]
async fn permit_is_released_at_body_end() {
    let layer = OverloadLayer::new(1);
    let mut service = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        let frames = vec![
            Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::data(Bytes::from_static(b"b"))),
        ];
        Ok::<_, Infallible>(Response::new(StreamBody::new(tokio_stream::iter(frames))))
    }));
    let response = service.ready().await.unwrap().call(get("/")).await.unwrap();
    let mut body = response.into_body();
    assert_eq!(layer.stats().in_flight, 1);
    assert!(body.frame().await.unwrap().is_ok());
    assert!(body.frame().await.unwrap().is_ok());
    assert_eq!(
        layer.stats().in_flight,
        1,
        "the stream may still have frames"
    );
    assert!(body.frame().await.is_none());
    assert_eq!(layer.stats().in_flight, 0);
    drop(body);
    assert_eq!(layer.stats().in_flight, 0);

    // A body that knows it has ended gives the permit back with its last
    // frame, before anyone polls it again.
    let mut service = layer.layer(Ok200::default());
    let mut body = call_now(&mut service, get("/")).into_body();
    assert_eq!(layer.stats().in_flight, 1);
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "ok"
    );
    assert_eq!(layer.stats().in_flight, 0);
}

#[tokio::test]
async fn permit_is_released_when_the_body_is_dropped() {
    let layer = OverloadLayer::new(1);
    let mut service = layer.layer(Ok200::default());
    let response = call_now(&mut service, get("/"));
    assert_eq!(layer.stats().in_flight, 1);
    drop(response);
    assert_eq!(layer.stats().in_flight, 0);
    // A response future dropped before it answered releases it too.
    let mut slow = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        std::future::pending::<()>().await;
        Ok::<_, Infallible>(Response::new(Body::default()))
    }));
    let future = slow.ready().await.unwrap().call(get("/"));
    assert_eq!(layer.stats().in_flight, 1);
    drop(future);
    assert_eq!(layer.stats().in_flight, 0);
}

// An inner error is passed through unchanged (the error type is the inner
// one) and releases the permit.
#[tokio::test]
async fn inner_errors_pass_through_and_release() {
    let layer = OverloadLayer::new(1);
    let service = layer.layer(tower::service_fn(|_req: Request<Body>| async {
        Err::<Response<Body>, _>(std::io::Error::other("boom"))
    }));
    let error = service.oneshot(get("/")).await.unwrap_err();
    assert_eq!(error.to_string(), "boom");
    assert_eq!(layer.stats().in_flight, 0);
}

#[test]
fn health_and_readiness_paths_are_exempt() {
    let layer = OverloadLayer::new(1);
    let mut service = layer.layer(Ok200::default());
    let _held = call_now(&mut service, get("/orders"));
    for path in ["/healthz", "/readyz", "/livez", "/health"] {
        let response = call_now(&mut service, get(path));
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(
        call_now(&mut service, grpc("/grpc.health.v1.Health/Check"))
            .headers()
            .get("grpc-status"),
        None
    );
    assert_eq!(layer.stats().in_flight, 1, "exempt requests hold no slot");
    // Same length as an exempt path, or same length and last byte: the
    // bit filter lets them through to the exact comparison, which says no.
    for path in ["/healthz/x", "/hello", "/xealthz"] {
        assert_eq!(
            call_now(&mut service, get(path)).status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}"
        );
    }

    let custom = OverloadLayer::builder()
        .max_in_flight(1)
        .exempt_paths(["/status"])
        .exempt(|req| req.method() == http::Method::OPTIONS)
        .build()
        .unwrap();
    let mut service = custom.layer(Ok200::default());
    let _held = call_now(&mut service, get("/"));
    assert_eq!(
        call_now(&mut service, get("/status")).status(),
        StatusCode::OK
    );
    assert_eq!(
        call_now(&mut service, get("/healthz")).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let options = Request::options("/").body(Body::default()).unwrap();
    assert_eq!(call_now(&mut service, options).status(), StatusCode::OK);
}

// Clones of the layer and every service made from it share one limit
// (axum #2634, tower #764: state cloned per connection).
#[test]
fn clones_share_the_limit() {
    let layer = OverloadLayer::new(2);
    let mut a = layer.clone().layer(Ok200::default());
    let mut b = a.clone();
    let mut c = Overload::new(Ok200::default(), &layer);
    let _x = call_now(&mut a, get("/"));
    let _y = call_now(&mut b, get("/"));
    assert_eq!(
        call_now(&mut c, get("/")).status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn bad_configuration_fails_at_build_naming_the_field() {
    let field = |builder: OverloadLayerBuilder| builder.build().unwrap_err().field();
    let b = OverloadLayer::builder;
    assert_eq!(field(b()), "max_in_flight");
    assert_eq!(field(b().max_in_flight(0)), "max_in_flight");
    assert_eq!(
        field(b().adaptive(AdaptiveLimit::gradient2().min(0))),
        "adaptive"
    );
    assert_eq!(
        field(b().adaptive(AdaptiveLimit::gradient2().min(50).max(10))),
        "adaptive"
    );
    assert_eq!(
        field(b().adaptive(AdaptiveLimit::gradient2().initial(2000))),
        "adaptive"
    );
    assert_eq!(
        field(
            b().per_key(KeyLimit::new("k", 1))
                .partition(Partition::new("a", 10))
        ),
        "partition"
    );
    assert_eq!(
        field(b().max_in_flight(5).partition(Partition::new("a", 0))),
        "partition"
    );
    assert_eq!(
        field(
            b().max_in_flight(5)
                .partition(Partition::new("a", 60))
                .partition(Partition::new("b", 50))
        ),
        "partition"
    );
    assert_eq!(
        field(
            b().max_in_flight(5)
                .partition(Partition::new("a", 6))
                .partition(Partition::new("a", 5))
        ),
        "partition"
    );
    assert_eq!(
        field(b().max_in_flight(5).partition(Partition::new("other", 5))),
        "partition"
    );
    assert_eq!(field(b().per_key(KeyLimit::new("k", 0))), "per_key");
    assert_eq!(field(b().per_key(KeyLimit::new("a\"b", 1))), "per_key");
    assert_eq!(field(b().max_in_flight(1).max_keys(0)), "max_keys");
    assert_eq!(
        field(b().max_in_flight(1).queue(0, Duration::from_millis(1))),
        "queue"
    );
    assert_eq!(
        field(b().max_in_flight(1).queue(1, Duration::ZERO)),
        "queue"
    );
    assert_eq!(
        field(
            b().per_key(KeyLimit::new("k", 1))
                .queue(1, Duration::from_millis(1))
        ),
        "queue"
    );
    assert_eq!(
        field(b().max_in_flight(1).retry_after(Duration::ZERO)),
        "retry_after"
    );
    assert_eq!(
        field(b().max_in_flight(1).exempt_paths(["healthz"])),
        "exempt_paths"
    );
    assert_eq!(
        field(b().max_in_flight(1).trusted_proxies(["10.0.0.0/33"])),
        "trusted_proxies"
    );
    assert_eq!(field(b().max_in_flight(1).ipv6_prefix(129)), "ipv6_prefix");
    let layer = b()
        .max_in_flight(1)
        .retry_after(Duration::from_millis(1500))
        .build()
        .unwrap();
    let mut service = layer.layer(Ok200::default());
    let _held = call_now(&mut service, get("/"));
    assert_eq!(
        call_now(&mut service, get("/")).headers()["retry-after"],
        "2"
    );
}
