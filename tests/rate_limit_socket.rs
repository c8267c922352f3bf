//! Rate limiting over real sockets: axum serves with
//! `into_make_service_with_connect_info`, one service clone per connection,
//! and the peer address reaches the limiter.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_edge::rate_limit::{LimitRateLayer, PeerAddr, Policy, Quota};

/// Puts the connection's address into the request as `PeerAddr`, the way a
/// user without the `axum` feature would.
async fn insert_peer(
    axum::extract::ConnectInfo(addr): axum::extract::ConnectInfo<SocketAddr>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    request.extensions_mut().insert(PeerAddr(addr));
    next.run(request).await
}

async fn serve(layer: LimitRateLayer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(layer);
    // Without the `axum` feature the layer cannot read `ConnectInfo` itself.
    #[cfg(not(feature = "axum"))]
    let router = router.layer(axum::middleware::from_fn(insert_peer));
    #[cfg(feature = "axum")]
    let _ = insert_peer;
    tokio::spawn(async move {
        axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap()
    });
    addr
}

/// One request on a fresh connection; the raw response head.
async fn get(addr: SocketAddr, extra: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut buf),
    )
    .await
    .expect("server answered in time")
    .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

fn status(response: &str) -> &str {
    response.get(9..12).unwrap_or("")
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

// Every connection gets its own service clone; they share one quota. An
// untrusted peer's X-Forwarded-For is ignored (RFC 7239 §8.1 reasoning:
// forwarding headers are only as good as the proxies that wrote them).
#[tokio::test]
async fn connections_share_the_quota_and_spoofed_xff_is_ignored() {
    let layer = LimitRateLayer::builder()
        .policy(Policy::new("ip", Quota::per_hour(3)))
        .trusted_proxies(["10.0.0.0/8"])
        .build()
        .unwrap();
    let addr = serve(layer.clone()).await;
    let mut statuses = Vec::new();
    for i in 0..5 {
        let response = get(addr, &format!("X-Forwarded-For: 198.51.100.{i}\r\n")).await;
        statuses.push(status(&response).to_owned());
        if status(&response) == "200" {
            assert_eq!(
                header(&response, "ratelimit"),
                Some(format!("\"ip\";r={};t={}", 2 - i, (i + 1) * 1200).as_str()),
                "{response}"
            );
        } else {
            assert_eq!(header(&response, "retry-after"), Some("1200"), "{response}");
            assert_eq!(header(&response, "cache-control"), Some("no-store"));
            assert_eq!(
                header(&response, "content-type"),
                Some("application/problem+json")
            );
            assert_eq!(
                header(&response, "ratelimit-policy"),
                Some("\"ip\";q=3;w=3600")
            );
        }
    }
    assert_eq!(statuses, ["200", "200", "200", "429", "429"]);
    // One key: the loopback peer, whatever the header said.
    assert_eq!(layer.tracked_keys("ip"), Some(1));
}
