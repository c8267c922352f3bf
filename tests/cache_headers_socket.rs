//! The cache-headers layer over a real socket with axum: ETags and 304s on
//! the wire, and a streaming body that is never buffered.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_edge::cache_headers::{CacheControl, CacheHeadersLayer, CacheRule};

mod support;
use support::body::FirstThenOpen;

async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = CacheHeadersLayer::builder()
        .rule(
            CacheRule::new(
                CacheControl::new()
                    .public()
                    .max_age(Duration::from_secs(60)),
            )
            .path_pattern("/products/*"),
        )
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route(
            "/products/{id}",
            get(|| async { ([("content-type", "application/json")], "{\"id\":1}") }),
        )
        .route(
            "/stream",
            get(|| async { Body::new(FirstThenOpen::new(b"first-chunk")) }),
        )
        .layer(layer);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends `request` and reads until `until` appears (or the connection
/// closes); gives up after 5 s so a regression fails instead of hanging.
async fn raw(addr: SocketAddr, request: &str, until: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
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

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .lines()
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
}

// RFC 9110 §13.1.2, §15.4.5 on the wire: a 200 with ETag and the policy's
// Cache-Control, then a 304 with no body and no representation headers.
#[tokio::test]
async fn etag_and_304_on_the_wire() {
    let addr = serve().await;
    let first = raw(
        addr,
        "GET /products/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "{\"id\":1}",
    )
    .await;
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    assert_eq!(
        header(&first, "cache-control"),
        Some("public, max-age=60"),
        "{first}"
    );
    let etag = header(&first, "etag").expect("an etag").to_owned();

    let second = raw(
        addr,
        &format!(
            "GET /products/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nIf-None-Match: \"nope\", {etag}\r\n\r\n"
        ),
        "\r\n\r\n",
    )
    .await;
    assert!(second.starts_with("HTTP/1.1 304"), "{second}");
    assert_eq!(header(&second, "etag"), Some(etag.as_str()));
    assert_eq!(header(&second, "cache-control"), Some("public, max-age=60"));
    assert_eq!(header(&second, "content-type"), None, "{second}");
    assert!(second.ends_with("\r\n\r\n"), "a 304 has no body: {second}");

    // HEAD gets the GET's ETag and is answered 304 too.
    let head = raw(
        addr,
        &format!(
            "HEAD /products/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nIf-None-Match: {etag}\r\n\r\n"
        ),
        "\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 304"), "{head}");
}

// RFC 9110 §8.8.3.1 (an ETag only where changes can be reasonably
// determined): a streaming body passes through unbuffered: the head and
// the first chunk reach the client while the body has not ended.
#[tokio::test]
async fn streaming_body_reaches_the_client_unbuffered() {
    let addr = serve().await;
    let response = raw(
        addr,
        "GET /stream HTTP/1.1\r\nHost: x\r\nIf-None-Match: \"x\"\r\n\r\n",
        "first-chunk",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains("first-chunk"), "{response}");
    assert_eq!(header(&response, "etag"), None, "{response}");
}
