//! Drives the axum example's app on a real socket so the example cannot rot:
//! every behaviour its docs and README promise is asserted here.

#[allow(dead_code)]
#[path = "../examples/axum.rs"]
mod example;

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use example::common::{self, Config};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::socket;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tower_edge::rate_limit::Quota;

/// A roomy quota: tests that are not about rate limits never hit it.
fn config() -> Config {
    Config::default()
}

/// The example's own `serve` on a free port, until the test ends.
async fn serve(config: &Config) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = example::serve(listener, config.clone(), std::future::pending());
    tokio::spawn(async move { server.await.expect("valid configuration") });
    addr
}

struct Call<'a> {
    method: &'a str,
    path: &'a str,
    headers: Vec<(&'a str, String)>,
    body: &'a str,
}

fn call(method: &'static str, path: &'static str) -> Call<'static> {
    Call {
        method,
        path,
        headers: Vec::new(),
        body: "",
    }
}

impl<'a> Call<'a> {
    fn header(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    fn json(mut self, body: &'a str) -> Self {
        self.body = body;
        self.header("content-type", "application/json")
    }

    async fn send(self, addr: SocketAddr) -> http::Response<Bytes> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = http::Request::builder()
            .method(self.method)
            .uri(format!("http://{addr}{}", self.path));
        for (name, value) in self.headers {
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(Bytes::from(self.body.to_owned())))
            .unwrap();
        let res = client.request(req).await.unwrap();
        let (parts, body) = res.into_parts();
        http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
    }
}

fn json(res: &http::Response<Bytes>) -> serde_json::Value {
    serde_json::from_slice(res.body())
        .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(res.body())))
}

fn header<'r>(res: &'r http::Response<Bytes>, name: &str) -> &'r str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no `{name}` header in {:?}", res.headers()))
        .to_str()
        .unwrap()
}

/// All `RateLimit` lines joined, as a Structured Fields list.
fn ratelimit(res: &http::Response<Bytes>) -> String {
    let lines: Vec<&str> = res
        .headers()
        .get_all("ratelimit")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    lines.join(", ")
}

#[tokio::test]
async fn health_is_public_and_carries_a_request_id() {
    let addr = serve(&config()).await;
    let res = call("GET", "/health").send(addr).await;
    assert_eq!(res.status(), 200);
    assert_eq!(json(&res)["status"], "ok");
    let id = header(&res, "x-request-id");
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
}

#[tokio::test]
async fn correlation_id_is_echoed_on_success_and_on_rejections() {
    let addr = serve(&config()).await;
    let res = call("GET", "/products")
        .header("x-request-id", "my-id-123")
        .send(addr)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-request-id"), "my-id-123");

    let res = call("GET", "/me")
        .header("x-request-id", "my-id-456")
        .send(addr)
        .await;
    assert_eq!(res.status(), 401);
    assert_eq!(header(&res, "x-request-id"), "my-id-456");
}

#[tokio::test]
async fn products_are_public_cacheable_and_revalidate_with_304() {
    // RFC 9110 §13.1.2 If-None-Match, §15.4.5 304; RFC 9111 §5.2.2 max-age.
    let addr = serve(&config()).await;
    for path in ["/products", "/products/1"] {
        let res = call("GET", path).send(addr).await;
        assert_eq!(res.status(), 200, "{path}");
        assert_eq!(header(&res, "cache-control"), "public, max-age=60");
        let etag = header(&res, "etag").to_owned();
        assert!(etag.starts_with('"'), "strong ETag: {etag}");

        let res = call("GET", path)
            .header("if-none-match", etag.clone())
            .send(addr)
            .await;
        assert_eq!(res.status(), 304, "{path}");
        assert!(res.body().is_empty());
        assert_eq!(header(&res, "etag"), etag);
        assert_eq!(header(&res, "cache-control"), "public, max-age=60");

        let res = call("GET", path)
            .header("if-none-match", "\"something-else\"")
            .send(addr)
            .await;
        assert_eq!(res.status(), 200, "{path}: a different tag gets the body");
    }
    let body = json(&call("GET", "/products/1").send(addr).await);
    assert_eq!(body["id"], 1);
    assert_eq!(body["name"], "keyboard");
}

#[tokio::test]
async fn unknown_product_is_a_404_problem() {
    // RFC 9457: problem+json.
    let addr = serve(&config()).await;
    let res = call("GET", "/products/999").send(addr).await;
    assert_eq!(res.status(), 404);
    assert_eq!(header(&res, "content-type"), "application/problem+json");
    let problem = json(&res);
    assert_eq!(problem["status"], 404);
    assert_eq!(problem["detail"], "no product with id 999");
    assert!(!res.headers().contains_key("etag"));
}

#[tokio::test]
async fn put_needs_a_token_with_the_write_scope() {
    // RFC 6750 §3: 401 with a challenge without `error`, 403
    // `insufficient_scope` naming the scope.
    let config = config();
    let addr = serve(&config).await;
    let update = r#"{"name":"keyboard","price_cents":3900}"#;

    let res = call("PUT", "/products/1").json(update).send(addr).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        header(&res, "www-authenticate"),
        format!("Bearer realm=\"{}\"", common::REALM)
    );

    let reader = common::token(&config, "ann", "products:read", Duration::from_secs(60));
    let res = call("PUT", "/products/1")
        .bearer(&reader)
        .json(update)
        .send(addr)
        .await;
    assert_eq!(res.status(), 403);
    let challenge = header(&res, "www-authenticate");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(
        challenge.contains("scope=\"products:write\""),
        "{challenge}"
    );

    let res = call("PUT", "/products/1")
        .bearer("not.a.token")
        .json(update)
        .send(addr)
        .await;
    assert_eq!(res.status(), 401);
    assert!(header(&res, "www-authenticate").contains("error=\"invalid_token\""));

    // Right secret, wrong audience.
    let other = Config {
        jwt_audience: "another-api".into(),
        ..Config::default()
    };
    let foreign = common::token(&other, "ann", "products:write", Duration::from_secs(60));
    let res = call("PUT", "/products/1")
        .bearer(&foreign)
        .json(update)
        .send(addr)
        .await;
    assert_eq!(res.status(), 401);
}

#[tokio::test]
async fn put_honours_if_match_and_changes_the_etag() {
    // RFC 9110 §13.1.1 If-Match: 412 on a stale tag, the write only happens
    // on a match; the new representation gets a new tag.
    let config = config();
    let addr = serve(&config).await;
    let token = common::dev_token(&config);
    let old = call("GET", "/products/2").send(addr).await;
    let old_etag = header(&old, "etag").to_owned();

    let res = call("PUT", "/products/2")
        .bearer(&token)
        .header("if-match", "\"stale\"")
        .json(r#"{"name":"mouse","price_cents":1}"#)
        .send(addr)
        .await;
    assert_eq!(res.status(), 412);
    assert_eq!(
        json(&call("GET", "/products/2").send(addr).await)["price_cents"],
        2_500
    );

    let res = call("PUT", "/products/2")
        .bearer(&token)
        .header("if-match", old_etag.clone())
        .json(r#"{"name":"mouse","price_cents":1999}"#)
        .send(addr)
        .await;
    assert_eq!(res.status(), 200);
    let new_etag = header(&res, "etag").to_owned();
    assert_ne!(new_etag, old_etag);
    assert_eq!(json(&res)["price_cents"], 1_999);

    // Readers see the change: their old tag no longer gets a 304, and the
    // tag the PUT announced is the one the GET carries.
    let res = call("GET", "/products/2")
        .header("if-none-match", old_etag.clone())
        .send(addr)
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "etag"), new_etag);

    // Writing again with the old tag is a lost update: refused.
    let res = call("PUT", "/products/2")
        .bearer(&token)
        .header("if-match", old_etag)
        .json(r#"{"name":"mouse","price_cents":5}"#)
        .send(addr)
        .await;
    assert_eq!(res.status(), 412);

    // A PUT without If-Match writes unconditionally.
    let res = call("PUT", "/products/2")
        .bearer(&token)
        .json(r#"{"name":"mouse","price_cents":7}"#)
        .send(addr)
        .await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn me_needs_a_token_and_shows_subject_and_scopes() {
    let config = config();
    let addr = serve(&config).await;
    let res = call("GET", "/me").send(addr).await;
    assert_eq!(res.status(), 401);
    assert_eq!(
        header(&res, "www-authenticate"),
        format!("Bearer realm=\"{}\"", common::REALM)
    );

    let res = call("GET", "/me")
        .bearer(&common::dev_token(&config))
        .send(addr)
        .await;
    assert_eq!(res.status(), 200);
    let body = json(&res);
    assert_eq!(body["subject"], "dev-user");
    assert_eq!(
        body["scopes"],
        serde_json::json!([
            "products:read",
            "products:write",
            "orders:write",
            "greeter:call"
        ])
    );
    // RFC 9111 §3.5: a response to an authorized request is private.
    assert_eq!(header(&res, "cache-control"), "private");
}

#[tokio::test]
async fn anonymous_clients_are_limited_by_ip_and_users_by_subject() {
    // RFC 6585 §4 429 + Retry-After; draft-ietf-httpapi-ratelimit-headers.
    let config = Config {
        rate_limit: Quota::per_minute(3),
        flood_guard: Quota::per_minute(100),
        ..Config::default()
    };
    let addr = serve(&config).await;
    for remaining in [2, 1, 0] {
        let res = call("GET", "/products").send(addr).await;
        assert_eq!(res.status(), 200);
        let policies: Vec<_> = res.headers().get_all("ratelimit-policy").iter().collect();
        assert_eq!(policies.len(), 2, "{policies:?}");
        let limits = ratelimit(&res);
        assert!(
            limits.contains(&format!("\"client\";r={remaining};")),
            "{limits}"
        );
        assert!(limits.contains("\"ip\";r="), "{limits}");
    }
    let res = call("GET", "/products").send(addr).await;
    assert_eq!(res.status(), 429);
    let retry_after: u64 = header(&res, "retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&res, "cache-control"), "no-store");
    assert!(ratelimit(&res).contains("\"client\";r=0;"));
    assert!(res.headers().contains_key("x-request-id"));

    // Same IP, but authenticated: the user's own bucket.
    let token = common::dev_token(&config);
    let res = call("GET", "/products").bearer(&token).send(addr).await;
    assert_eq!(res.status(), 200);
    assert!(
        ratelimit(&res).contains("\"client\";r=2;"),
        "{}",
        ratelimit(&res)
    );

    // Until the user's quota is spent too.
    call("GET", "/me").bearer(&token).send(addr).await;
    call("GET", "/me").bearer(&token).send(addr).await;
    let res = call("GET", "/me").bearer(&token).send(addr).await;
    assert_eq!(res.status(), 429);
}

#[tokio::test]
async fn the_flood_guard_stops_an_ip_before_token_checks() {
    let config = Config {
        rate_limit: Quota::per_minute(100),
        flood_guard: Quota::per_minute(2),
        ..Config::default()
    };
    let addr = serve(&config).await;
    let token = common::dev_token(&config);
    call("GET", "/health").send(addr).await;
    call("GET", "/health").bearer(&token).send(addr).await;
    // Even a valid token does not help: the IP is flooding.
    let res = call("GET", "/me").bearer(&token).send(addr).await;
    assert_eq!(res.status(), 429);
    assert!(ratelimit(&res).contains("\"ip\";r=0;"));
    assert!(res.headers().contains_key("retry-after"));
    // A bad token is not even looked at: 429 from the guard, not 401 from
    // the JWT layer inside it (the recommended order of the crate docs).
    let res = call("GET", "/me").bearer("not.a.token").send(addr).await;
    assert_eq!(res.status(), 429);
    assert!(!res.headers().contains_key("www-authenticate"));
}

// The limits by IP see the real client: behind a trusted proxy (here the
// test client on loopback), each `X-Forwarded-For` client has its own
// bucket. Without the peer address both would share the one "unknown"
// bucket and the second client would be limited too.
#[tokio::test]
async fn each_client_behind_a_trusted_proxy_has_its_own_bucket() {
    let config = Config {
        rate_limit: Quota::per_minute(1),
        flood_guard: Quota::per_minute(100),
        trusted_proxies: vec!["127.0.0.1/32".into()],
        ..Config::default()
    };
    let addr = serve(&config).await;
    let from = |client: &'static str| call("GET", "/products").header("x-forwarded-for", client);
    assert_eq!(from("198.51.100.1").send(addr).await.status(), 200);
    assert_eq!(from("198.51.100.1").send(addr).await.status(), 429);
    let res = from("198.51.100.2").send(addr).await;
    assert_eq!(res.status(), 200);
    assert!(
        ratelimit(&res).contains("\"client\";r=0;"),
        "{}",
        ratelimit(&res)
    );
}

// The development secret is public: its token is printed only while it is
// in use, and the examples refuse to listen beyond loopback with it.
#[test]
fn the_dev_secret_stays_on_loopback_and_a_real_secret_is_never_printed() {
    let dev = Config::default();
    assert!(dev.uses_dev_secret());
    assert!(common::printable_dev_token(&dev).is_some());
    assert!(dev.refuse_public_dev_secret().is_ok());
    let public = Config {
        bind: "0.0.0.0:3000".parse().unwrap(),
        ..Config::default()
    };
    let err = public.refuse_public_dev_secret().unwrap_err();
    assert!(err.contains("JWT_SECRET"), "{err}");
    let own = Config {
        bind: "0.0.0.0:3000".parse().unwrap(),
        jwt_secret: "x".repeat(32),
        ..Config::default()
    };
    assert!(!own.uses_dev_secret());
    assert!(own.refuse_public_dev_secret().is_ok());
    assert_eq!(common::printable_dev_token(&own), None);
}

// README: the per-IP flood guard is ten times the per-client quota, by
// default and when `RATE_LIMIT` sets it.
#[test]
fn the_flood_guard_is_ten_times_the_client_quota() {
    let config = Config::default();
    assert_eq!(config.rate_limit.to_string(), "600/min burst 60");
    assert_eq!(config.flood_guard.to_string(), "6000/min burst 600");
    let quota: Quota = "5/min".parse().unwrap();
    assert_eq!(common::flood_guard_for(quota).to_string(), "50/min");
}

#[test]
fn a_bad_trusted_proxy_fails_at_build_time() {
    let config = Config {
        trusted_proxies: vec!["10.0.0.0/33".into()],
        ..Config::default()
    };
    let err = example::app(&config).unwrap_err();
    assert!(err.to_string().contains("trusted_proxies"), "{err}");
}

/// `REDIS_URL`: two replicas of the example on one Redis share one
/// per-client quota (needs Redis on 127.0.0.1:6379, feature `redis`).
#[cfg(feature = "redis")]
#[tokio::test]
async fn two_replicas_on_one_redis_share_the_quota() {
    use tower_edge::rate_limit::redis::{RedisFallback, RedisStore};

    let store = RedisStore::builder("redis://127.0.0.1:6379")
        // A prefix no other run used: a pid alone repeats across CI
        // containers, and the store keeps an hour's quota.
        .key_prefix(support::redis::unique_prefix("example-axum-quota"))
        .timeout(Duration::from_secs(2))
        .fallback(RedisFallback::Error)
        .build()
        .unwrap();
    if let Err(err) = store.ping(Duration::from_secs(2)).await {
        panic!(
            "this test needs Redis on 127.0.0.1:6379 ({err}): run `redis-server` (apt-get install redis-server)"
        );
    }
    let mut config = config();
    config.rate_limit = Quota::per_hour(4).with_burst(4);
    config.flood_guard = common::flood_guard_for(config.rate_limit);
    config.redis = Some(store);
    let replica_a = serve(&config).await;
    let replica_b = serve(&config).await;
    let token = common::token(
        &config,
        "redis-user",
        "products:read",
        Duration::from_secs(60),
    );

    let mut statuses = Vec::new();
    for i in 0..6 {
        let replica = if i % 2 == 0 { replica_a } else { replica_b };
        let res = call("GET", "/me").bearer(&token).send(replica).await;
        statuses.push(res.status().as_u16());
    }
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 429, 429],
        "one quota across both replicas"
    );
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
    let addr = serve(&config).await;
    socket::assert_slow_clients_are_closed(addr).await;
    // A client that sends its head at once is served as before.
    assert_eq!(call("GET", "/health").send(addr).await.status(), 200);
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
    let addr = serve(&config).await;
    socket::assert_connections_over_max_wait(addr, 2).await;
}

// Graceful shutdown, now that the example serves through hyper-util itself
// (as the hyper example's test checks it): it stops accepting, and a
// connection halfway through a request head does not hold it up (hyper
// closes it; the header read timeout would too).
#[tokio::test]
async fn graceful_shutdown_stops_accepting_and_drains() {
    let config = Config {
        header_read_timeout: Duration::from_millis(200),
        ..Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(example::serve(listener, config, async {
        let _ = stopped.await;
    }));
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(socket::GET_HEALTH).await.unwrap();
    let head = socket::response_head(&mut half, socket::PROMPTLY).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    half.write_all(b"GET /health HTTP/1.1\r\nHost: example.test\r\nX-Slow: ")
        .await
        .unwrap();

    stop.send(()).unwrap();
    tokio::time::timeout(socket::PROMPTLY, server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}

/// Sends `calls` at once (each on its own connection) and returns the
/// responses.
#[cfg(feature = "overload")]
async fn all_at_once(addr: SocketAddr, calls: Vec<Call<'static>>) -> Vec<http::Response<Bytes>> {
    let tasks: Vec<_> = calls
        .into_iter()
        .map(|call| tokio::spawn(call.send(addr)))
        .collect();
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.unwrap());
    }
    responses
}

#[cfg(feature = "overload")]
fn count(responses: &[http::Response<Bytes>], status: u16) -> usize {
    responses
        .iter()
        .filter(|r| r.status().as_u16() == status)
        .count()
}

// MAX_IN_FLIGHT with a slow origin: the global limit (right after OTel,
// before auth) admits two of six concurrent requests (six clients, one
// request each) and sheds the others at once: 503 problem+json with
// Retry-After (RFC 9110 §15.6.4, §10.2.3; RFC 9457). Health checks pass.
#[cfg(feature = "overload")]
#[tokio::test]
async fn max_in_flight_sheds_the_excess_with_503() {
    let config = Config {
        max_in_flight: 2,
        origin_delay: Duration::from_secs(1),
        ..config()
    };
    let addr = serve(&config).await;
    let calls = (0..6)
        .map(|i| {
            let token = common::token(
                &config,
                &format!("user-{i}"),
                "products:read",
                Duration::from_secs(60),
            );
            call("GET", "/products").bearer(&token)
        })
        .collect();
    let (responses, health) = tokio::join!(all_at_once(addr, calls), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        call("GET", "/health").send(addr).await
    });
    assert_eq!(count(&responses, 200), 2);
    assert_eq!(count(&responses, 503), 4);
    for shed in responses.iter().filter(|r| r.status() == 503) {
        assert_eq!(shed.headers()["retry-after"], "1");
        assert_eq!(shed.headers()["content-type"], "application/problem+json");
        assert!(shed.headers().contains_key("x-request-id"));
    }
    assert_eq!(health.status(), 200, "health checks are exempt");
}

// The per-client in-flight limit (after auth, keyed by subject, by IP when
// anonymous): one client over its share (MAX_IN_FLIGHT / 8) gets 429 with
// the RateLimit fields (RFC 6585 §4; draft-ietf-httpapi-ratelimit-headers,
// quota unit `concurrent-requests`) while another client is still served.
#[cfg(feature = "overload")]
#[tokio::test]
async fn one_client_over_its_in_flight_share_gets_429() {
    let config = Config {
        max_in_flight: 16, // two per client
        origin_delay: Duration::from_secs(1),
        ..config()
    };
    let addr = serve(&config).await;
    let token = common::token(&config, "ann", "products:read", Duration::from_secs(60));
    let mut calls: Vec<_> = (0..4)
        .map(|_| call("GET", "/products").bearer(&token))
        .collect();
    calls.push(call("GET", "/products"));
    let responses = all_at_once(addr, calls).await;
    let ann = &responses[..4];
    assert_eq!(count(ann, 200), 2);
    assert_eq!(count(ann, 429), 2);
    for limited in ann.iter().filter(|r| r.status() == 429) {
        assert_eq!(
            limited.headers()["ratelimit-policy"],
            r#""client-in-flight";q=2;qu="concurrent-requests""#
        );
        assert_eq!(limited.headers()["ratelimit"], r#""client-in-flight";r=0"#);
        assert_eq!(limited.headers()["retry-after"], "1");
    }
    assert_eq!(responses[4].status(), 200, "another client is unaffected");
}

// The orders contract (draft-ietf-httpapi-idempotency-key-header-07):
// `POST /orders` needs scope `orders:write` and an `Idempotency-Key`
// (§2.7: missing → 400); 201 with a new unique `id` and `Location`; a
// retry with the same key replays the first outcome byte for byte
// (`Idempotent-Replayed: true`), another body → 422; `GET /orders/{id}`.
#[tokio::test]
async fn orders_are_created_once_per_idempotency_key() {
    let config = config();
    let addr = serve(&config).await;
    let token = common::dev_token(&config);
    let order = r#"{"product_id": 1, "quantity": 2}"#;
    let post = |key: &'static str, body: &'static str| {
        call("POST", "/orders")
            .bearer(&token)
            .header("idempotency-key", key)
            .json(body)
    };

    let missing = call("POST", "/orders")
        .bearer(&token)
        .json(order)
        .send(addr)
        .await;
    assert_eq!(missing.status(), 400);
    assert_eq!(header(&missing, "content-type"), "application/problem+json");

    let first = post("\"order-a\"", order).send(addr).await;
    assert_eq!(first.status(), 201);
    let created = json(&first);
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(header(&first, "location"), format!("/orders/{id}"));
    assert_eq!(
        (created["product_id"].as_u64(), created["quantity"].as_u64()),
        (Some(1), Some(2))
    );

    let retry = post("\"order-a\"", order).send(addr).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(header(&retry, "idempotent-replayed"), "true");
    assert_eq!(header(&retry, "location"), header(&first, "location"));
    assert_eq!(retry.body(), first.body());

    let other = post("\"order-a\"", r#"{"product_id": 1, "quantity": 3}"#)
        .send(addr)
        .await;
    assert_eq!(other.status(), 422);

    let second = post("\"order-b\"", order).send(addr).await;
    assert_eq!(second.status(), 201);
    assert_ne!(json(&second)["id"], created["id"], "a new key, a new order");

    let path = format!("/orders/{id}");
    let read = Call {
        method: "GET",
        path: &path,
        headers: Vec::new(),
        body: "",
    }
    .send(addr)
    .await;
    assert_eq!(read.status(), 200);
    assert_eq!(json(&read)["id"], created["id"]);

    // Scope `orders:write` (RFC 6750 §3.1: 403 insufficient_scope).
    let reader = common::token(&config, "ann", "products:read", Duration::from_secs(60));
    let denied = call("POST", "/orders")
        .bearer(&reader)
        .header("idempotency-key", "\"order-c\"")
        .json(order)
        .send(addr)
        .await;
    assert_eq!(denied.status(), 403);
}

// `ORIGIN_DELAY_MS`: while the first request runs, a duplicate gets 409
// with `Retry-After` (draft-07 §2.7).
#[tokio::test]
async fn a_duplicate_while_the_first_order_runs_gets_409() {
    let mut config = config();
    // Long enough that the duplicate, sent 50 ms later, surely finds the
    // first still running, even on a loaded machine.
    config.origin_delay = Duration::from_secs(2);
    let addr = serve(&config).await;
    let token = common::dev_token(&config);
    let post = || {
        call("POST", "/orders")
            .bearer(&token)
            .header("idempotency-key", "\"slow\"")
            .json(r#"{"product_id": 1, "quantity": 2}"#)
            .send(addr)
    };
    let (a, b) = tokio::join!(post(), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        post().await
    });
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409]);
    let conflict = if a.status() == 409 { &a } else { &b };
    assert_eq!(header(conflict, "retry-after"), "1");
}

/// `REDIS_URL`: the idempotency keys live in Redis, so a retry landing on
/// another replica replays the first replica's order (needs Redis on
/// 127.0.0.1:6379, feature `redis`).
#[cfg(feature = "redis")]
#[tokio::test]
async fn a_retry_on_another_replica_replays_the_order_from_redis() {
    let backend = tower_edge::redis::RedisBackend::builder("redis://127.0.0.1:6379")
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    if let Err(err) = backend.ping(Duration::from_secs(2)).await {
        panic!(
            "this test needs Redis on 127.0.0.1:6379 ({err}): run `redis-server` (apt-get install redis-server)"
        );
    }
    let mut config = config();
    config.redis_backend = Some(backend);
    let replica_a = serve(&config).await;
    let replica_b = serve(&config).await;
    let token = common::dev_token(&config);
    // A key no other run used (the example's prefix is fixed).
    let key = format!(
        "\"{}\"",
        support::redis::unique_prefix("example-axum-order")
    );
    let post = |addr| {
        call("POST", "/orders")
            .bearer(&token)
            .header("idempotency-key", key.clone())
            .json(r#"{"product_id": 1, "quantity": 2}"#)
            .send(addr)
    };
    let first = post(replica_a).await;
    assert_eq!(first.status(), 201);
    let retry = post(replica_b).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(header(&retry, "idempotent-replayed"), "true");
    assert_eq!(retry.body(), first.body());
}

// The response cache of the example (feature `response-cache`): products
// are kept 30 s on the server (RFC 9213 targeted field, not sent on) while
// browsers get `max-age=60`; a hit answers without the handler (RFC 9211
// `Cache-Status: tower-edge; hit`), and a PUT purges the product's groups
// (RFC 9875 §3) so readers see the change at once.
#[cfg(feature = "response-cache")]
#[tokio::test]
async fn products_come_from_the_response_cache_until_a_put_purges_them() {
    let config = config();
    let addr = serve(&config).await;
    let token = common::dev_token(&config);
    let first = call("GET", "/products/1").send(addr).await;
    assert!(header(&first, "cache-status").contains("fwd=uri-miss"));
    assert_eq!(header(&first, "cache-control"), "public, max-age=60");
    assert!(first.headers().get("edge-cache-control").is_none());
    let hit = call("GET", "/products/1").send(addr).await;
    let status = header(&hit, "cache-status");
    assert!(status.starts_with("tower-edge; hit; ttl="), "{status}");
    assert_eq!(header(&hit, "cache-groups"), "\"products\", \"product-1\"");
    assert_eq!(header(&hit, "etag"), header(&first, "etag"));
    call("GET", "/products").send(addr).await;
    let res = call("PUT", "/products/1")
        .bearer(&token)
        .json(r#"{"name":"keyboard","price_cents":3900}"#)
        .send(addr)
        .await;
    assert_eq!(res.status(), 200);
    for path in ["/products/1", "/products"] {
        let after = call("GET", path).send(addr).await;
        assert!(!header(&after, "cache-status").contains("hit"), "{path}");
    }
    let after = call("GET", "/products/1").send(addr).await;
    assert_eq!(json(&after)["price_cents"], 3_900);
}
