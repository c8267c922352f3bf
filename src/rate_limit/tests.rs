use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt};

use super::store::{Check, StoreFuture};
use super::*;
use crate::Subject;

type Body = Full<Bytes>;

/// The default memory stores on paused tokio time.
fn tokio_clock() -> impl Clock {
    let origin = tokio::time::Instant::now();
    move || origin.elapsed()
}

fn layer(builder: LimitRateLayerBuilder) -> LimitRateLayer {
    builder.clock(tokio_clock()).build().unwrap()
}

fn single(quota: Quota) -> LimitRateLayer {
    layer(LimitRateLayer::builder().policy(Policy::new("default", quota)))
}

#[derive(Clone)]
struct Ok200(Arc<AtomicUsize>);

impl Service<Request<Body>> for Ok200 {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Request<Body>) -> Self::Future {
        self.0.fetch_add(1, Ordering::SeqCst);
        std::future::ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    }
}

fn service(layer: &LimitRateLayer) -> (LimitRate<Ok200>, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    (tower::Layer::layer(layer, Ok200(Arc::clone(&calls))), calls)
}

fn from(peer: &str) -> Request<Body> {
    let mut req = Request::new(Body::default());
    let peer: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(PeerAddr(peer));
    req
}

async fn send(svc: &mut LimitRate<Ok200>, req: Request<Body>) -> Response<ResponseBody<Body>> {
    svc.ready().await.unwrap().call(req).await.unwrap()
}

use crate::body::ResponseBody;

fn header<'a>(res: &'a Response<ResponseBody<Body>>, name: &str) -> &'a str {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name}"))
        .to_str()
        .unwrap()
}

/// `RateLimit: "name";r=..;t=..` parsed as an RFC 9651 List: (name, r, t).
fn ratelimit(res: &Response<ResponseBody<Body>>) -> Vec<(String, i64, i64)> {
    use sfv::{BareItem, ListEntry, Parser};
    let mut out = Vec::new();
    for value in res.headers().get_all("ratelimit") {
        let list = Parser::new(value.as_bytes())
            .parse::<sfv::List>()
            .expect("RFC 9651 list");
        for entry in list {
            let ListEntry::Item(item) = entry else {
                panic!("inner list")
            };
            let BareItem::String(name) = &item.bare_item else {
                panic!("name is not a string")
            };
            let get = |k: &str| match item.params.get(k) {
                Some(BareItem::Integer(i)) => i64::from(*i),
                other => panic!("{k}: {other:?}"),
            };
            out.push((name.as_str().to_owned(), get("r"), get("t")));
        }
    }
    out
}

// GCRA (ITU-T I.371, virtual scheduling): burst, then the steady rate; r
// and t (draft-ietf-httpapi-ratelimit-headers-11 §4.1.1, §4.1.2) derive
// from the GCRA state. per_second(2): T = 500 ms, τ = 500 ms.
#[tokio::test(start_paused = true)]
async fn burst_then_steady_rate_with_exact_headers() {
    let (mut svc, calls) = service(&single(Quota::per_second(2)));
    let peer = "192.0.2.1:1000";

    let res = send(&mut svc, from(peer)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(ratelimit(&res), [("default".into(), 1, 1)]);
    let res = send(&mut svc, from(peer)).await;
    assert_eq!(ratelimit(&res), [("default".into(), 0, 1)]);
    let res = send(&mut svc, from(peer)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), "1"); // 500 ms, rounded up
    assert_eq!(ratelimit(&res), [("default".into(), 0, 1)]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // Steady rate: one request every 500 ms.
    for _ in 0..5 {
        tokio::time::advance(Duration::from_millis(500)).await;
        let res = send(&mut svc, from(peer)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(ratelimit(&res), [("default".into(), 0, 1)]);
        let res = send(&mut svc, from(peer)).await;
        assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    }
    // Idle: the bucket refills to the burst.
    tokio::time::advance(Duration::from_secs(5)).await;
    let res = send(&mut svc, from(peer)).await;
    assert_eq!(ratelimit(&res), [("default".into(), 1, 1)]);
    // Another client has its own bucket.
    let res = send(&mut svc, from("192.0.2.2:1000")).await;
    assert_eq!(ratelimit(&res), [("default".into(), 1, 1)]);
}

// RFC 6585 §4: 429 with `Retry-After: <ceil seconds>` (RFC 9110 §10.2.3
// delay-seconds) and `Cache-Control: no-store` (a 429 must not be stored);
// r and t follow the TAT (GCRA, ITU-T I.371).
#[tokio::test(start_paused = true)]
async fn retry_after_is_rounded_up_and_429_is_no_store() {
    // 6/min burst 3: T = 10 s, τ = 20 s.
    let (mut svc, _) = service(&single(Quota::per_minute(6).with_burst(3)));
    let peer = "192.0.2.1:1000";
    for (r, t) in [(2, 10), (1, 20), (0, 30)] {
        let res = send(&mut svc, from(peer)).await;
        assert_eq!(ratelimit(&res), [("default".into(), r, t)]);
    }
    let res = send(&mut svc, from(peer)).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), "10");
    assert_eq!(header(&res, "cache-control"), "no-store");
    assert_eq!(header(&res, "content-type"), "application/problem+json");
    assert_eq!(ratelimit(&res), [("default".into(), 0, 30)]);
    tokio::time::advance(Duration::from_millis(9_500)).await;
    let res = send(&mut svc, from(peer)).await;
    assert_eq!(header(&res, "retry-after"), "1"); // 0.5 s left
    assert_eq!(ratelimit(&res), [("default".into(), 0, 21)]); // 20.5 s
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["status"], 429);
    assert!(json["detail"].as_str().unwrap().contains("`default`"));
    tokio::time::advance(Duration::from_millis(500)).await;
    let res = send(&mut svc, from(peer)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(ratelimit(&res), [("default".into(), 0, 30)]);
}

// Rejections are built in one place (`crate::rejection`): a custom
// rejection body keeps what the 429 requires: `Retry-After`,
// `Cache-Control: no-store` (RFC 6585 §4) and the `RateLimit` fields.
#[tokio::test(start_paused = true)]
async fn a_custom_rejection_body_keeps_the_429_headers() {
    use crate::rejection::{Problem, Rejections, RenderedBody};
    let rejections = Rejections::new(|p: &Problem| RenderedBody {
        content_type: HeaderValue::from_static("text/plain"),
        body: bytes::Bytes::from(p.title().to_owned()),
    });
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("default", Quota::per_minute(1)))
            .rejections(rejections),
    );
    let (mut svc, _) = service(&l);
    send(&mut svc, from("192.0.2.1:1")).await;
    let res = send(&mut svc, from("192.0.2.1:1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "content-type"), "text/plain");
    assert_eq!(header(&res, "retry-after"), "60");
    assert_eq!(header(&res, "cache-control"), "no-store");
    assert_eq!(header(&res, "ratelimit-policy"), r#""default";q=1;w=60"#);
    assert_eq!(ratelimit(&res), [("default".into(), 0, 60)]);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "Too Many Requests");
}

// draft-ietf-httpapi-ratelimit-headers-11 §3, §4: `RateLimit-Policy` and
// `RateLimit` are RFC 9651 Structured Fields, on allowed and limited
// responses, never in trailers (§3.1, §4.1).
#[tokio::test(start_paused = true)]
async fn headers_are_structured_fields_on_allowed_and_limited_responses() {
    use sfv::{BareItem, ListEntry, Parser};
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("burst", Quota::per_second(1)))
            .policy(Policy::new("hourly", Quota::per_hour(100)).key(SubjectOrIp)),
    );
    let (mut svc, _) = service(&l);
    for expected in [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
        let res = send(&mut svc, from("192.0.2.1:1")).await;
        assert_eq!(res.status(), expected);
        let policy = res.headers().get("ratelimit-policy").unwrap();
        let list = Parser::new(policy.as_bytes()).parse::<sfv::List>().unwrap();
        let parsed: Vec<_> = list
            .iter()
            .map(|entry| {
                let ListEntry::Item(item) = entry else {
                    panic!()
                };
                let BareItem::String(name) = &item.bare_item else {
                    panic!()
                };
                let int = |k: &str| match item.params.get(k) {
                    Some(BareItem::Integer(i)) => i64::from(*i),
                    _ => panic!(),
                };
                (name.as_str().to_owned(), int("q"), int("w"))
            })
            .collect();
        assert_eq!(
            parsed,
            [("burst".into(), 1, 1), ("hourly".into(), 100, 3600)]
        );
        if expected == StatusCode::OK {
            assert_eq!(
                ratelimit(&res),
                [("burst".into(), 0, 1), ("hourly".into(), 99, 36)]
            );
        } else {
            // Checking stopped at the denial: hourly was not charged.
            assert_eq!(ratelimit(&res), [("burst".into(), 0, 1)]);
        }
        // Head only: the body has no trailers.
        let mut body = res.into_body();
        while let Some(frame) = body.frame().await {
            assert!(frame.unwrap().is_data());
        }
    }
}

// gRPC over HTTP/2 protocol spec and gRPC status codes: gRPC callers get
// HTTP 200 + grpc-status 8 (RESOURCE_EXHAUSTED), never 429.
#[tokio::test(start_paused = true)]
async fn grpc_requests_get_resource_exhausted() {
    let (mut svc, _) = service(&single(Quota::per_minute(1)));
    let grpc = || {
        let mut req = from("192.0.2.1:1");
        *req.version_mut() = http::Version::HTTP_2;
        req.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        req
    };
    assert_eq!(send(&mut svc, grpc()).await.status(), StatusCode::OK);
    let res = send(&mut svc, grpc()).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(header(&res, "grpc-status"), "8");
    assert_eq!(header(&res, "retry-after"), "60");
    assert!(header(&res, "grpc-message").contains("rate limit"));
}

// State in one Arc: every clone of the service (one per connection)
// counts against the same quota.
#[tokio::test(start_paused = true)]
async fn every_clone_shares_one_limiter() {
    let l = single(Quota::per_minute(10));
    let (svc, calls) = service(&l);
    let mut allowed = 0;
    for i in 0..50 {
        let mut clone = if i % 2 == 0 {
            svc.clone()
        } else {
            service(&l).0
        };
        if send(&mut clone, from("192.0.2.1:1")).await.status() == StatusCode::OK {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10);
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(l.tracked_keys("default"), Some(1));
}

// Client IP (RFC 7239 §8.1: forwarding headers are only as good as the
// proxies that wrote them; X-Forwarded-For, which has no RFC, alike): an
// untrusted peer's X-Forwarded-For is ignored, so spoofing it does not
// change the key.
#[tokio::test(start_paused = true)]
async fn xff_spoofing_from_an_untrusted_peer_does_not_change_the_key() {
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("ip", Quota::per_minute(2)))
            .trusted_proxies(["10.0.0.0/8"]),
    );
    let (mut svc, _) = service(&l);
    let mut statuses = Vec::new();
    for i in 0..4 {
        let mut req = from("203.0.113.5:1");
        req.headers_mut().insert(
            "x-forwarded-for",
            format!("198.51.100.{i}").parse().unwrap(),
        );
        statuses.push(send(&mut svc, req).await.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert_eq!(l.tracked_keys("ip"), Some(1));
}

// Client IP (RFC 7239 §5.2, §8.1; X-Forwarded-For alike): behind a trusted
// proxy, all X-Forwarded-For lines are read right to left; a spoofed
// leftmost entry is never the key.
#[tokio::test(start_paused = true)]
async fn clients_behind_trusted_proxies_are_keyed_by_their_own_address() {
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("ip", Quota::per_minute(1)))
            .trusted_proxies(["10.0.0.0/8"]),
    );
    let (mut svc, _) = service(&l);
    let req = |spoof: &str, client: &str| {
        let mut req = from("10.0.0.1:1");
        req.headers_mut()
            .append("x-forwarded-for", spoof.parse().unwrap());
        req.headers_mut().append(
            "x-forwarded-for",
            format!("{client}, 10.0.0.7").parse().unwrap(),
        );
        req
    };
    assert_eq!(
        send(&mut svc, req("1.1.1.1", "198.51.100.1"))
            .await
            .status(),
        StatusCode::OK
    );
    // Same client, different spoofed leftmost entry: same bucket.
    assert_eq!(
        send(&mut svc, req("2.2.2.2", "198.51.100.1"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another client behind the same proxy: its own bucket.
    assert_eq!(
        send(&mut svc, req("2.2.2.2", "198.51.100.2"))
            .await
            .status(),
        StatusCode::OK
    );
}

// Client IP: IPv6 clients are keyed by /64 by default (RFC 4291 §2.5.4:
// the low 64 bits are the interface ID, which a host may change at will,
// RFC 8981).
#[tokio::test(start_paused = true)]
async fn ipv6_clients_share_their_64() {
    let (mut svc, _) = service(&single(Quota::per_minute(1)));
    assert_eq!(
        send(&mut svc, from("[2001:db8:0:1::1]:1")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut svc, from("[2001:db8:0:1:ffff::2]:1"))
            .await
            .status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&mut svc, from("[2001:db8:0:2::1]:1")).await.status(),
        StatusCode::OK
    );
    // Configurable: /128 keys each address alone.
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("ip", Quota::per_minute(1)))
            .ipv6_prefix(128),
    );
    let (mut svc, _) = service(&l);
    assert_eq!(
        send(&mut svc, from("[2001:db8::1]:1")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut svc, from("[2001:db8::2]:1")).await.status(),
        StatusCode::OK
    );
}

// An authenticated user behind an exhausted anonymous IP bucket still gets
// their own quota.
#[tokio::test(start_paused = true)]
async fn authenticated_subject_is_keyed_apart_from_its_ip() {
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("client", Quota::per_minute(1)).key(SubjectOrIp)),
    );
    let (mut svc, _) = service(&l);
    let anon = || from("192.0.2.1:1");
    let user = |name: &str| {
        let mut req = anon();
        req.extensions_mut().insert(Subject::new(name));
        req
    };
    assert_eq!(send(&mut svc, anon()).await.status(), StatusCode::OK);
    assert_eq!(
        send(&mut svc, anon()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(send(&mut svc, user("alice")).await.status(), StatusCode::OK);
    assert_eq!(
        send(&mut svc, user("alice")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(send(&mut svc, user("bob")).await.status(), StatusCode::OK);
}

// Security review finding: tokens with `"sub": ""` shared one bucket. An
// empty subject (RFC 7519 §4.1.2 makes `sub` a non-empty identifier in
// practice: "" names nobody) is no subject: keyed by client IP.
#[tokio::test(start_paused = true)]
async fn empty_subject_is_keyed_by_ip() {
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("client", Quota::per_minute(1)).key(SubjectOrIp)),
    );
    let (mut svc, _) = service(&l);
    let empty = |peer: &str| {
        let mut req = from(peer);
        req.extensions_mut().insert(Subject::new(""));
        req
    };
    assert_eq!(
        send(&mut svc, empty("192.0.2.1:1")).await.status(),
        StatusCode::OK
    );
    // Another client with an empty subject has its own (IP) bucket.
    assert_eq!(
        send(&mut svc, empty("192.0.2.2:1")).await.status(),
        StatusCode::OK
    );
    // And the first shares its bucket with its anonymous IP.
    assert_eq!(
        send(&mut svc, from("192.0.2.1:1")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

// The tightest policy decides; routes override; exempt requests skip.
#[tokio::test(start_paused = true)]
async fn several_policies_routes_and_exemptions() {
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("per-ip", Quota::per_minute(3)))
            .policy(Policy::new("global", Quota::per_minute(100)).key(Global))
            .route("/login", Policy::new("login", Quota::per_minute(1)))
            .exempt(|req| req.uri().path() == "/healthz"),
    );
    let (mut svc, _) = service(&l);
    let at = |path: &str| {
        let mut req = from("192.0.2.1:1");
        *req.uri_mut() = path.parse().unwrap();
        req
    };
    let res = send(&mut svc, at("/login")).await;
    assert_eq!(ratelimit(&res), [("login".into(), 0, 60)]);
    assert_eq!(header(&res, "ratelimit-policy"), r#""login";q=1;w=60"#);
    let res = send(&mut svc, at("/login/again")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    // `/loginx` is not below `/login`.
    let res = send(&mut svc, at("/loginx")).await;
    assert_eq!(
        ratelimit(&res),
        [("per-ip".into(), 2, 20), ("global".into(), 99, 1)]
    );
    for _ in 0..2 {
        assert_eq!(send(&mut svc, at("/a")).await.status(), StatusCode::OK);
    }
    let res = send(&mut svc, at("/a")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(header(&res, "content-type").starts_with("application/problem+json"));
    // Exempt: through, without headers.
    for _ in 0..5 {
        let res = send(&mut svc, at("/healthz")).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("ratelimit").is_none());
    }
}

// A missing peer address is never a 500 (tower_governor answers 500
// "Unable To Extract Key!"): the shared "unknown" bucket by default, or
// skipped.
#[tokio::test(start_paused = true)]
async fn requests_without_a_key_share_the_unknown_bucket() {
    let (mut svc, _) = service(&single(Quota::per_minute(2)));
    let no_peer = || Request::new(Body::default());
    assert_eq!(send(&mut svc, no_peer()).await.status(), StatusCode::OK);
    assert_eq!(send(&mut svc, no_peer()).await.status(), StatusCode::OK);
    assert_eq!(
        send(&mut svc, no_peer()).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Known clients are unaffected.
    assert_eq!(
        send(&mut svc, from("192.0.2.1:1")).await.status(),
        StatusCode::OK
    );

    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("user", Quota::per_minute(1)).key(SubjectOnly))
            .unknown_key(UnknownKey::Skip),
    );
    let (mut svc, _) = service(&l);
    for _ in 0..3 {
        let res = send(&mut svc, no_peer()).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers().get("ratelimit").is_none());
    }
}

// The peer address from a bare SocketAddr extension and from a hook.
#[tokio::test(start_paused = true)]
async fn peer_from_socket_addr_extension_or_hook() {
    #[derive(Clone)]
    struct MyConnInfo(std::net::IpAddr);
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("ip", Quota::per_minute(1)))
            .peer_addr_with(|ext| ext.get::<MyConnInfo>().map(|c| c.0)),
    );
    let (mut svc, _) = service(&l);
    let mut req = Request::new(Body::default());
    req.extensions_mut()
        .insert("192.0.2.9:1".parse::<SocketAddr>().unwrap());
    assert_eq!(send(&mut svc, req).await.status(), StatusCode::OK);
    let mut req = Request::new(Body::default());
    req.extensions_mut()
        .insert(MyConnInfo("192.0.2.9".parse().unwrap()));
    assert_eq!(
        send(&mut svc, req).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(l.tracked_keys("ip"), Some(1));
}

#[tokio::test(start_paused = true)]
async fn legacy_headers_are_an_option() {
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("ip", Quota::per_minute(2)))
            .headers(HeaderStyle::Legacy),
    );
    let (mut svc, _) = service(&l);
    let res = send(&mut svc, from("192.0.2.1:1")).await;
    assert!(res.headers().get("ratelimit").is_none());
    assert_eq!(header(&res, "x-ratelimit-limit"), "2");
    assert_eq!(header(&res, "x-ratelimit-remaining"), "1");
    assert_eq!(header(&res, "x-ratelimit-reset"), "30");
    send(&mut svc, from("192.0.2.1:1")).await;
    let res = send(&mut svc, from("192.0.2.1:1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "x-ratelimit-remaining"), "0");
    assert_eq!(header(&res, "x-ratelimit-reset"), "60");

    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("ip", Quota::per_minute(2)))
            .headers(HeaderStyle::Off),
    );
    let (mut svc, _) = service(&l);
    let res = send(&mut svc, from("192.0.2.1:1")).await;
    assert!(
        res.headers().get("ratelimit").is_none()
            && res.headers().get("x-ratelimit-limit").is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn cost_consumes_several_cells() {
    let l = layer(
        LimitRateLayer::builder().policy(Policy::new("ip", Quota::per_minute(10)).cost(|req| {
            if req.method() == http::Method::POST {
                4
            } else {
                1
            }
        })),
    );
    let (mut svc, _) = service(&l);
    let post = || {
        let mut req = from("192.0.2.1:1");
        *req.method_mut() = http::Method::POST;
        req
    };
    assert_eq!(
        ratelimit(&send(&mut svc, post()).await),
        [("ip".into(), 6, 24)]
    );
    assert_eq!(
        ratelimit(&send(&mut svc, post()).await),
        [("ip".into(), 2, 48)]
    );
    let res = send(&mut svc, post()).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&res, "retry-after"), "12"); // two more cells of 6 s
    assert_eq!(
        ratelimit(&send(&mut svc, from("192.0.2.1:1")).await),
        [("ip".into(), 1, 54)]
    );
}

/// A store that answers later, like a network store.
#[derive(Debug)]
struct SlowStore {
    inner: Arc<MemoryStore<LayerClock>>,
    fail: bool,
}

impl RateLimitStore for SlowStore {
    fn check(&self, check: Check<'_>) -> StoreFuture {
        let inner = Arc::clone(&self.inner);
        let (key, quota, cost, fail) = (*check.key, *check.quota, check.cost, self.fail);
        StoreFuture::boxed(async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if fail {
                return Err(StoreError::new("connection refused"));
            }
            Ok(inner.check_now(&key, &quota, cost))
        })
    }
}

fn slow(fail: bool) -> SlowStore {
    SlowStore {
        inner: Arc::new(
            MemoryStore::builder()
                .clock(LayerClock::Custom(Arc::new(tokio_clock())))
                .build(),
        ),
        fail,
    }
}

// A network store plugs in without changing the layer.
#[tokio::test(start_paused = true)]
async fn asynchronous_stores_plug_in() {
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("remote", Quota::per_minute(2)).store(slow(false)))
            .policy(Policy::new("local", Quota::per_minute(3))),
    );
    let (mut svc, calls) = service(&l);
    let res = send(&mut svc, from("192.0.2.1:1")).await;
    assert_eq!(
        ratelimit(&res),
        [("remote".into(), 1, 30), ("local".into(), 2, 20)]
    );
    send(&mut svc, from("192.0.2.1:1")).await;
    let res = send(&mut svc, from("192.0.2.1:1")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(ratelimit(&res), [("remote".into(), 0, 60)]);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(l.tracked_keys("remote"), None);
    assert_eq!(l.tracked_keys("local"), Some(1));
}

#[tokio::test(start_paused = true)]
async fn store_errors_fail_open_by_default_or_closed() {
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("remote", Quota::per_minute(1)).store(slow(true))),
    );
    let (mut svc, _) = service(&l);
    for _ in 0..3 {
        assert_eq!(
            send(&mut svc, from("192.0.2.1:1")).await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(l.store_errors(), 3);
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("remote", Quota::per_minute(1)).store(slow(true)))
            .on_store_error(OnStoreError::Reject),
    );
    let (mut svc, calls) = service(&l);
    let res = send(&mut svc, from("192.0.2.1:1")).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// Counts `warn` events (and remembers their fields) on this thread.
#[derive(Clone, Default)]
struct Warnings(Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Warnings {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.push_str(&format!("{}={value:?} ", field.name()));
            }
        }
        if *event.metadata().level() == tracing::Level::WARN {
            let mut fields = Fields(String::new());
            event.record(&mut fields);
            self.0.lock().unwrap().push(fields.0);
        }
    }
}

// A store that is down fails every request: one warning per interval, not
// one per request, and the next warning says how many were not warned of.
#[tokio::test(start_paused = true)]
async fn a_failing_store_is_warned_of_once_per_interval() {
    use tracing_subscriber::layer::SubscriberExt;
    let warnings = Warnings::default();
    let _default =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(warnings.clone()));
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("remote", Quota::per_minute(1)).store(slow(true))),
    );
    let (mut svc, _) = service(&l);
    for _ in 0..20 {
        send(&mut svc, from("192.0.2.1:1")).await;
    }
    assert_eq!(l.store_errors(), 20);
    let seen = warnings.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(
        seen[0].contains("failures_since_last_warning=0"),
        "{seen:?}"
    );
    tokio::time::advance(STORE_ERROR_WARN_INTERVAL).await;
    send(&mut svc, from("192.0.2.1:1")).await;
    send(&mut svc, from("192.0.2.1:1")).await;
    let seen = warnings.0.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(
        seen[1].contains("failures_since_last_warning=19"),
        "{seen:?}"
    );
    assert!(seen[1].contains("total_failures=21"), "{seen:?}");
}

#[test]
fn bad_configuration_names_the_field() {
    let err = |b: LimitRateLayerBuilder| b.build().unwrap_err().field();
    assert_eq!(err(LimitRateLayer::builder()), "policy");
    let p = || Policy::new("a", Quota::per_second(1));
    assert_eq!(
        err(LimitRateLayer::builder().policy(Policy::new("a", Quota::per_second(0)))),
        "quota"
    );
    assert_eq!(
        err(LimitRateLayer::builder()
            .policy(Policy::new("a", Quota::new(1, Duration::from_millis(1500))))),
        "quota"
    );
    assert_eq!(
        err(LimitRateLayer::builder().policy(Policy::new(
            "a",
            Quota::per_second(1_500_000_000).with_burst(1000)
        ))),
        "quota"
    );
    assert_eq!(
        err(LimitRateLayer::builder().policy(p()).policy(p())),
        "policy"
    );
    assert_eq!(
        err(LimitRateLayer::builder().policy(Policy::new("a\"b", Quota::per_second(1)))),
        "policy"
    );
    assert_eq!(
        err(LimitRateLayer::builder()
            .policy(p())
            .trusted_proxies(["10.0.0.0/40"])),
        "trusted_proxies"
    );
    assert_eq!(
        err(LimitRateLayer::builder().policy(p()).ipv6_prefix(129)),
        "ipv6_prefix"
    );
    assert_eq!(
        err(LimitRateLayer::builder().policy(p()).max_keys(0)),
        "max_keys"
    );
    assert_eq!(
        err(LimitRateLayer::builder()
            .policy(p())
            .route("login", Policy::new("b", Quota::per_second(1)))),
        "route"
    );
}

#[tokio::test(start_paused = true)]
async fn service_builder_ext_adds_the_default_layer() {
    use crate::ServiceBuilderExt;
    let mut svc = tower::ServiceBuilder::new()
        .rate_limit_per_ip(Quota::per_minute(1))
        .service_fn(|_req: Request<Body>| async {
            Ok::<_, Infallible>(Response::new(Body::default()))
        });
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.1:1"))
        .await
        .unwrap();
    assert_eq!(res.headers()["ratelimit-policy"], r#""default";q=1;w=60"#);
    let res = svc
        .ready()
        .await
        .unwrap()
        .call(from("192.0.2.1:1"))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

// Closures and pairs are extractors: per API key *and* route here.
#[tokio::test(start_paused = true)]
async fn closure_and_composite_keys() {
    let api_key = HeaderKey::new(http::HeaderName::from_static("x-api-key"));
    let tenant = |req: &RequestInfo<'_>| {
        let tenant = req.uri().path().split('/').nth(1)?;
        Some(Key::from_bytes(tenant.as_bytes()))
    };
    let l = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("tenant-key", Quota::per_minute(1)).key((api_key, tenant))),
    );
    let (mut svc, _) = service(&l);
    let req = |key: &str, path: &str| {
        let mut req = from("192.0.2.1:1");
        *req.uri_mut() = path.parse().unwrap();
        req.headers_mut().insert("x-api-key", key.parse().unwrap());
        req
    };
    assert_eq!(
        send(&mut svc, req("k1", "/acme/x")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut svc, req("k1", "/acme/y")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        send(&mut svc, req("k1", "/globex/x")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&mut svc, req("k2", "/acme/x")).await.status(),
        StatusCode::OK
    );
    assert_eq!(l.tracked_keys("tenant-key"), Some(3));
    // Regression (review): the key sent twice used to count as no key, so a
    // client left its exhausted bucket for the shared unknown one. The
    // first value is the key, as for `HeaderMap::get`.
    let mut twice = req("k1", "/acme/x");
    twice
        .headers_mut()
        .append("x-api-key", "k1".parse().unwrap());
    assert_eq!(
        send(&mut svc, twice).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    let mut other_second = req("k1", "/acme/x");
    other_second
        .headers_mut()
        .append("x-api-key", "fresh".parse().unwrap());
    assert_eq!(
        send(&mut svc, other_second).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // No API key: the shared unknown bucket, not an error.
    let res = send(&mut svc, from("192.0.2.1:1")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(l.tracked_keys("tenant-key"), Some(4));
}

/// The `Cache-Control` lines of a response to a request through `layer`
/// whose handler answers with `cache_control` (and `expires`).
async fn cache_control_after(
    layer: &LimitRateLayer,
    cache_control: &[&'static str],
    expires: bool,
) -> Vec<String> {
    let handler = tower::service_fn(move |_req: Request<Body>| {
        let mut response = Response::new(Body::default());
        for value in cache_control {
            response
                .headers_mut()
                .append(http::header::CACHE_CONTROL, HeaderValue::from_static(value));
        }
        if expires {
            response.headers_mut().insert(
                http::header::EXPIRES,
                HeaderValue::from_static("Thu, 01 Jan 2099 00:00:00 GMT"),
            );
        }
        std::future::ready(Ok::<_, Infallible>(response))
    });
    let response = tower::Layer::layer(layer, handler)
        .oneshot(from("192.0.2.1:1"))
        .await
        .unwrap();
    assert!(response.headers().contains_key("ratelimit"));
    response
        .headers()
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

// Security review finding: a response a shared cache may store (`public`,
// `s-maxage`, `max-age`, `Expires`) carried one client's `RateLimit` state
// to everyone it was served to. RFC 9111 §5.2.2.7: the qualified `private`
// directive forbids shared caches to store the named fields while they may
// store the rest (a cache that does not implement the qualified form treats
// the response as private: it stores nothing, which leaks nothing either).
#[tokio::test(start_paused = true)]
async fn per_client_fields_are_private_on_shared_cacheable_responses() {
    let ietf = single(Quota::per_minute(100));
    for (cache_control, expires) in [
        (&["public, max-age=60"][..], false),
        (&["s-maxage=30"][..], false),
        (&["max-age=10"][..], false),
        (&["no-cache", "max-age=0"][..], false),
        (&[][..], true),
    ] {
        let lines = cache_control_after(&ietf, cache_control, expires).await;
        let mut expected: Vec<String> = cache_control.iter().map(|s| (*s).to_owned()).collect();
        expected.push(r#"private="RateLimit""#.to_owned());
        assert_eq!(lines, expected, "{cache_control:?} {expires}");
    }

    // Not storable by a shared cache, or no Cache-Control at all: untouched.
    for cache_control in [
        &["private, max-age=60"][..],
        &["no-store"][..],
        &["public", "no-store"][..],
        &[][..],
    ] {
        let lines = cache_control_after(&ietf, cache_control, false).await;
        assert_eq!(lines, cache_control, "{cache_control:?}");
    }

    // The legacy fields are per client too (the limit itself is not).
    let both = layer(
        LimitRateLayer::builder()
            .policy(Policy::new("default", Quota::per_minute(100)))
            .headers(HeaderStyle::Both),
    );
    let lines = cache_control_after(&both, &["public, max-age=60"], false).await;
    assert_eq!(
        lines,
        [
            "public, max-age=60",
            r#"private="RateLimit, X-RateLimit-Remaining, X-RateLimit-Reset""#
        ]
    );
}
