//! A server-sent event stream through every layer of the recommended stack
//! (correlation, OTel, global shedding, per-IP limit, JWT, per-client limit,
//! per-client shedding, idempotency, response cache, cache headers), over a
//! real socket with axum.
//!
//! WHATWG HTML §9.2 (server-sent events): each event must reach the client
//! as soon as it is sent, while the response stays open. RFC 9111 §3
//! lets a cache store a response, never hold it back: a layer that buffered
//! the body to hash, store or replay it would never let the first event
//! out of a stream that does not end.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceBuilder;
use tower_edge::cache_headers::{CacheControl, CacheHeadersLayer, CacheRule};
use tower_edge::correlation::CorrelationIdLayer;
use tower_edge::idempotency::IdempotencyLayer;
use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer, VerificationKey};
use tower_edge::otel::OtelLayer;
use tower_edge::overload::OverloadLayer;
use tower_edge::rate_limit::{LimitRateLayer, Quota};
use tower_edge::response_cache::ResponseCacheLayer;

mod support;
use support::body::FirstThenOpen;

async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let key = VerificationKey::hmac(Algorithm::HS256, b"0123456789abcdef0123456789abcdef").unwrap();
    // `public, max-age=60` on the stream: the caches may store it as far as
    // its fields go, so only their streaming rules keep it flowing.
    let cacheable = CacheRule::new(
        CacheControl::new()
            .public()
            .max_age(Duration::from_secs(60)),
    )
    .path_prefix("/events");
    let stack = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .layer(OtelLayer::new())
        .layer(OverloadLayer::new(64))
        .layer(LimitRateLayer::new(Quota::per_second(100)))
        .layer(JwtAuthLayer::builder().key(key).optional().build().unwrap())
        .layer(LimitRateLayer::new(Quota::per_second(50)))
        .layer(IdempotencyLayer::new())
        .layer(ResponseCacheLayer::new())
        .layer(
            CacheHeadersLayer::builder()
                .rule(cacheable)
                .build()
                .unwrap(),
        );
    let app = axum::Router::new()
        .route(
            "/events",
            get(|| async {
                (
                    [("content-type", "text/event-stream")],
                    Body::new(FirstThenOpen::new(b"event: price\ndata: first\n\n")),
                )
            }),
        )
        .layer(stack);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    addr
}

/// Reads until `until` appears; gives up after 5 s so that a layer holding
/// the stream back fails the test instead of hanging it.
async fn read_until(stream: &mut tokio::net::TcpStream, until: &str) -> String {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if String::from_utf8_lossy(&buf).contains(until) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn the_first_event_reaches_the_client_while_the_stream_is_open() {
    let addr = serve().await;
    for round in 0..2 {
        // Twice: a second request must not be answered from a (wrongly)
        // stored copy or wait for a fill that never ends.
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let got = read_until(&mut stream, "data: first\n\n").await;
        assert!(got.contains("data: first\n\n"), "round {round}: {got:?}");
        let head = got.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("content-type: text/event-stream"), "{head}");
        assert!(head.contains("x-request-id:"), "{head}");
        // Never hashed (cache_headers) and never stored (response_cache).
        assert!(!head.contains("etag:"), "{head}");
        assert!(!head.contains("; hit"), "{head}");
        assert!(!head.contains("stored"), "{head}");
        // The stream is still open: nothing more, no end of the chunked
        // body, the connection not closed.
        let mut more = [0u8; 64];
        let next = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut more)).await;
        assert!(
            next.is_err(),
            "round {round}: the stream ended or sent more: {next:?}"
        );
    }
}
