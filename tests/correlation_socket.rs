//! Correlation IDs over a real socket: bytes that cannot be represented in
//! an `http::HeaderValue` (CR, LF) never come back to the client.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceBuilder;
use tower_edge::correlation::CorrelationIdLayer;

async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(ServiceBuilder::new().layer(CorrelationIdLayer::new()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut buf),
    )
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

// RFC 9110 §5.5, CWE-113 (response splitting): CRLF in an incoming ID is
// never reflected. A bare CR inside the value and an obs-fold continuation
// line (CRLF + space, RFC 9112 §5.2) are tried.
#[tokio::test]
async fn crlf_injection_is_never_reflected() {
    let addr = serve().await;
    let attempts: [&[u8]; 2] = [
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: abc\rSet-Cookie: evil=1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: abc\r\n Set-Cookie: evil=1\r\n\r\n",
    ];
    for attempt in attempts {
        let response = raw(addr, attempt).await;
        assert!(!response.is_empty(), "no response");
        assert!(
            !response.to_ascii_lowercase().contains("set-cookie"),
            "{response}"
        );
        assert!(!response.contains("evil"), "{response}");
        // Either the server refuses the malformed request outright, or the
        // layer answers with a fresh ID.
        let status_ok = response.starts_with("HTTP/1.1 200");
        let refused = response.starts_with("HTTP/1.1 400");
        assert!(status_ok || refused, "{response}");
        if status_ok {
            assert!(!response.contains("x-request-id: abc"), "{response}");
        }
    }
}

// Outside the default rule: tab, 10 KB and non-ASCII values are replaced on
// the wire too.
#[tokio::test]
async fn hostile_values_on_the_wire_are_replaced() {
    let addr = serve().await;
    let long = "a".repeat(10 * 1024);
    let values: [&[u8]; 3] = [b"ab\tcd", long.as_bytes(), "naïve-ü".as_bytes()];
    for value in values {
        let mut req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Request-Id: ".to_vec();
        req.extend_from_slice(value);
        req.extend_from_slice(b"\r\n\r\n");
        let response = raw(addr, &req).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        let id_line = response
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("x-request-id:"))
            .expect("an x-request-id header");
        let id = id_line.split_once(':').unwrap().1.trim();
        assert_eq!(
            uuid::Uuid::parse_str(id).unwrap().get_version_num(),
            7,
            "{id_line}"
        );
    }
}
