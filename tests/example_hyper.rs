//! Drives the hyper example over a real socket.

#[allow(dead_code)]
#[path = "../examples/hyper.rs"]
mod example;

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use example::common::{self, Config};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::socket;
use tower_edge::rate_limit::Quota;

async fn start(config: Config) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, config, std::future::pending()));
    addr
}

async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> http::Response<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn products_have_an_etag_and_revalidate_with_304() {
    // RFC 9110 §13.1.2 If-None-Match, §15.4.5 304.
    let addr = start(Config::default()).await;
    let res = get(addr, "/products", &[("x-request-id", "hyper-1")]).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "hyper-1");
    assert_eq!(res.headers()["cache-control"], "public, max-age=60");
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body[0]["name"], "keyboard");
    let etag = res.headers()["etag"].to_str().unwrap().to_owned();

    let res = get(addr, "/products", &[("if-none-match", &etag)]).await;
    assert_eq!(res.status(), 304);
    assert!(res.body().is_empty());
    assert_eq!(res.headers()["etag"], etag.as_str());

    let res = get(addr, "/products/2", &[]).await;
    assert_eq!(res.status(), 200);
    assert_ne!(res.headers()["etag"], etag.as_str());
    let res = get(addr, "/products/9", &[]).await;
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn me_is_401_without_a_token_and_200_with_one() {
    // RFC 6750 §3: the challenge on a 401.
    let config = Config::default();
    let token = common::dev_token(&config);
    let addr = start(config).await;
    let res = get(addr, "/me", &[]).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        res.headers()["www-authenticate"],
        format!("Bearer realm=\"{}\"", common::REALM).as_str()
    );
    assert!(res.headers().contains_key("x-request-id"));

    let bearer = format!("Bearer {token}");
    let res = get(addr, "/me", &[("authorization", &bearer)]).await;
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body["subject"], "dev-user");
    assert_eq!(body["scopes"][1], "products:write");

    let res = get(addr, "/me", &[("authorization", "Bearer not.a.token")]).await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn requests_over_the_quota_get_429() {
    // RFC 6585 §4: 429 with Retry-After; the peer address from `PeerAddr`.
    let config = Config {
        rate_limit: Quota::per_minute(2),
        flood_guard: Quota::per_minute(100),
        ..Config::default()
    };
    let addr = start(config).await;
    for _ in 0..2 {
        let res = get(addr, "/products", &[]).await;
        assert_eq!(res.status(), 200);
        assert!(res.headers().contains_key("ratelimit"));
    }
    let res = get(addr, "/products", &[]).await;
    assert_eq!(res.status(), 429);
    assert_eq!(res.headers()["retry-after"], "30");
    assert_eq!(res.headers()["cache-control"], "no-store");
    assert!(res.headers().contains_key("x-request-id"));
}

// `serve` inserts `PeerAddr`, so the limits by IP see the client: behind a
// trusted proxy (the test client on loopback) each `X-Forwarded-For`
// client has its own bucket. Without the peer address both would share
// the one "unknown" bucket.
#[tokio::test]
async fn each_client_behind_a_trusted_proxy_has_its_own_bucket() {
    let config = Config {
        rate_limit: Quota::per_minute(1),
        flood_guard: Quota::per_minute(100),
        trusted_proxies: vec!["127.0.0.1/32".into()],
        ..Config::default()
    };
    let addr = start(config).await;
    let xff = |client| [("x-forwarded-for", client)];
    assert_eq!(
        get(addr, "/products", &xff("198.51.100.1")).await.status(),
        200
    );
    assert_eq!(
        get(addr, "/products", &xff("198.51.100.1")).await.status(),
        429
    );
    assert_eq!(
        get(addr, "/products", &xff("198.51.100.2")).await.status(),
        200
    );
}

#[tokio::test]
async fn graceful_shutdown_stops_accepting() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(example::serve(listener, Config::default(), async {
        let _ = rx.await;
    }));
    assert_eq!(get(addr, "/health", &[]).await.status(), 200);
    tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("server stops after shutdown")
        .unwrap()
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

async fn put(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Response<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let mut req = http::Request::put(format!("http://{addr}{path}"));
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = client
        .request(
            req.body(http_body_util::Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

// RFC 6750 §3.1 (401/403), RFC 9110 §13.1.1 If-Match → 412 and no write.
#[tokio::test]
async fn put_needs_the_write_scope_and_honours_if_match() {
    let config = Config::default();
    let addr = start(config.clone()).await;
    let body = r#"{"name":"keyboard v2","price_cents":5100}"#;

    let res = put(addr, "/products/1", &[], body).await;
    assert_eq!(res.status(), 401);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    let reader = common::token(
        &config,
        "reader",
        "products:read",
        std::time::Duration::from_secs(60),
    );
    let auth = format!("Bearer {reader}");
    let res = put(addr, "/products/1", &[("authorization", &auth)], body).await;
    assert_eq!(res.status(), 403);
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );

    let auth = format!("Bearer {}", common::dev_token(&config));
    let current = get(addr, "/products/1", &[]).await;
    let etag = current.headers()["etag"].to_str().unwrap().to_owned();

    let res = put(
        addr,
        "/products/1",
        &[("authorization", &auth), ("if-match", "\"stale\"")],
        body,
    )
    .await;
    assert_eq!(res.status(), 412);
    assert_eq!(
        get(addr, "/products/1", &[]).await.headers()["etag"],
        etag.as_str(),
        "no write on 412"
    );

    let res = put(
        addr,
        "/products/1",
        &[("authorization", &auth), ("if-match", &etag)],
        body,
    )
    .await;
    assert_eq!(res.status(), 200);
    let after = get(addr, "/products/1", &[]).await;
    assert_ne!(after.headers()["etag"], etag.as_str());
    assert_eq!(after.headers()["etag"], res.headers()["etag"]);
    let product: serde_json::Value = serde_json::from_slice(after.body()).unwrap();
    assert_eq!(product["name"], "keyboard v2");

    let res = put(addr, "/products/1", &[("authorization", &auth)], "not json").await;
    assert_eq!(res.status(), 400);
}

// Slowloris (review finding 4). With the header read timeout (hyper's
// `http1::Builder::header_read_timeout`, plus a deadline on the first bytes
// for the HTTP/1-or-2 sniffing), a client that sends half a request head,
// or nothing, or goes silent between two requests on a kept-alive
// connection, loses the connection: RFC 9112 §9.5 lets a server close a
// connection that stays silent. Before, all three stayed open.
#[tokio::test]
async fn a_half_sent_request_head_is_closed_after_the_header_read_timeout() {
    let config = Config {
        header_read_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let addr = start(config).await;
    socket::assert_slow_clients_are_closed(addr).await;
    // A client that sends its head at once is served as before.
    assert_eq!(get(addr, "/health", &[]).await.status(), 200);
}

// With MAX_CONNECTIONS = 2 and two connections open, the server does not
// accept a third (it waits in the listen backlog, unanswered) until one of
// the two closes. Before, there was no limit: the third was served at once.
#[tokio::test]
async fn connections_over_max_connections_wait_until_one_closes() {
    let config = Config {
        max_connections: 2,
        ..Config::default()
    };
    let addr = start(config).await;
    socket::assert_connections_over_max_wait(addr, 2).await;
}

async fn post_order(
    addr: SocketAddr,
    headers: &[(&str, &str)],
    body: &str,
) -> http::Response<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let mut req = http::Request::post(format!("http://{addr}/orders"))
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let res = client
        .request(
            req.body(http_body_util::Full::new(Bytes::from(body.to_owned())))
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

// The orders contract (draft-ietf-httpapi-idempotency-key-header-07 §2.7):
// key required (400), 201 + unique `id` + `Location`, a retry replayed
// byte for byte and marked, another body 422, scope `orders:write`.
#[tokio::test]
async fn orders_are_created_once_per_idempotency_key() {
    let config = Config::default();
    let token = format!("Bearer {}", common::dev_token(&config));
    let addr = start(config.clone()).await;
    let order = r#"{"product_id": 1, "quantity": 2}"#;
    let auth = ("authorization", token.as_str());

    assert_eq!(post_order(addr, &[auth], order).await.status(), 400);
    let key = ("idempotency-key", "\"order-a\"");
    let first = post_order(addr, &[auth, key], order).await;
    assert_eq!(first.status(), 201);
    let created: serde_json::Value = serde_json::from_slice(first.body()).unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(
        first.headers()["location"],
        format!("/orders/{id}").as_str()
    );
    let retry = post_order(addr, &[auth, key], order).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(retry.headers()["idempotent-replayed"], "true");
    assert_eq!(retry.body(), first.body());
    let other = post_order(addr, &[auth, key], r#"{"product_id": 2, "quantity": 2}"#).await;
    assert_eq!(other.status(), 422);
    let second = post_order(addr, &[auth, ("idempotency-key", "\"order-b\"")], order).await;
    let second: serde_json::Value = serde_json::from_slice(second.body()).unwrap();
    assert_ne!(second["id"], created["id"]);
    let read = get(addr, &format!("/orders/{id}"), &[]).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.body(), first.body());
    let reader = format!(
        "Bearer {}",
        common::token(&config, "ann", "products:read", Duration::from_secs(60))
    );
    let denied = post_order(
        addr,
        &[("authorization", &reader), ("idempotency-key", "\"c\"")],
        order,
    )
    .await;
    assert_eq!(denied.status(), 403);
}

// The response cache of the example (feature `response-cache`): the
// second GET is a hit (RFC 9211), with the groups of RFC 9875 §2; the
// targeted field (RFC 9213) stays between the handler and the cache.
#[cfg(feature = "response-cache")]
#[tokio::test]
async fn products_come_from_the_response_cache() {
    let addr = start(Config::default()).await;
    let first = get(addr, "/products", &[]).await;
    let status = first.headers()["cache-status"].to_str().unwrap();
    assert!(status.contains("fwd=uri-miss"), "{status}");
    assert!(first.headers().get("edge-cache-control").is_none());
    let hit = get(addr, "/products", &[]).await;
    let status = hit.headers()["cache-status"].to_str().unwrap();
    assert!(status.starts_with("tower-edge; hit"), "{status}");
    assert_eq!(hit.headers()["cache-groups"], "\"products\"");
    assert_eq!(hit.body(), first.body());
}
