//! Our `LimitRateLayer` (in memory, keyed by peer IP) against
//! `tower_governor` 0.8 (`PeerIpKeyExtractor`) with the same quota, and the
//! stores alone: our `MemoryStore::check_now` against raw `governor`
//! `RateLimiter::keyed(..).check_key` (the floor).
//!
//! The quota is effectively unlimited (one cell per nanosecond, bursts of
//! 10⁹) so a hot key stays allowed; the limited cases use one request per
//! hour, used up before timing starts.
//!
//! tower_governor only accepts an inner service answering
//! `Response<axum::body::Body>` (it builds its 429 with `From<GovernorError>`),
//! so every service here, bare included, answers with an axum `Body`. It
//! reads the peer from axum's `ConnectInfo<SocketAddr>`, ours from our
//! `PeerAddr` first: each request carries the one extension its layer reads.
//! By default tower_governor adds no header to an allowed response, ours adds
//! `RateLimit-Policy` and `RateLimit`: `tower_edge_no_headers`
//! (`HeaderStyle::Off`) is the like-for-like figure, `tower_edge` the default.
//! With headers on both sides: `tower_governor_headers` (its `use_headers()`:
//! `x-ratelimit-limit` and `x-ratelimit-remaining`) against `tower_edge`
//! (draft-11) and `tower_edge_legacy_headers` (`HeaderStyle::Legacy`: three
//! `x-ratelimit-*` headers).

#[path = "../../common/mod.rs"]
mod common;

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use governor::{Quota as GovernorQuota, RateLimiter};
use http::{Request, Response, StatusCode};
use tower::Layer;
use tower_edge::rate_limit::{
    HeaderStyle, Key, LimitRateLayer, MemoryStore, PeerAddr, Policy, Quota,
};
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;

const HOT_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 50_000);

/// Ours: 10⁹ per second, bursts of 10⁹ (one cell per nanosecond).
const OURS_ALLOW_ALL: Quota = Quota::per_second(1_000_000_000);
const OURS_ONE_PER_HOUR: Quota = Quota::per_hour(1);
const BURST_ALLOW_ALL: u32 = 1_000_000_000;

/// The same quotas in governor's terms.
fn governor_allow_all() -> GovernorQuota {
    GovernorQuota::with_period(Duration::from_nanos(1))
        .expect("a non-zero period")
        .allow_burst(NonZeroU32::new(BURST_ALLOW_ALL).expect("non-zero"))
}

fn handler() -> impl tower::Service<
    Request<common::ReqBody>,
    Response = Response<axum::body::Body>,
    Error = std::convert::Infallible,
> + Clone
+ Send
+ 'static {
    tower::service_fn(|_request: Request<common::ReqBody>| {
        std::future::ready(Ok(Response::new(axum::body::Body::from(
            Bytes::from_static(b"hello"),
        ))))
    })
}

/// A request from `peer`, as our layer finds it (`PeerAddr`).
fn ours(peer: SocketAddr) -> Request<common::ReqBody> {
    let mut request = common::get("/hello", &[]);
    request.extensions_mut().insert(PeerAddr(peer));
    request
}

/// A request from `peer`, as tower_governor finds it (axum's `ConnectInfo`).
fn theirs(peer: SocketAddr) -> Request<common::ReqBody> {
    let mut request = common::get("/hello", &[]);
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn governor_layer(
    period: Duration,
    burst: u32,
) -> GovernorLayer<
    tower_governor::key_extractor::PeerIpKeyExtractor,
    governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
    axum::body::Body,
> {
    GovernorLayer::new(
        GovernorConfigBuilder::default()
            .period(period)
            .burst_size(burst)
            .finish()
            .expect("a valid governor configuration"),
    )
}

/// tower_governor with `use_headers()`: `x-ratelimit-limit` and
/// `x-ratelimit-remaining` on allowed responses.
fn governor_layer_with_headers(
    period: Duration,
    burst: u32,
) -> GovernorLayer<
    tower_governor::key_extractor::PeerIpKeyExtractor,
    governor::middleware::StateInformationMiddleware,
    axum::body::Body,
> {
    GovernorLayer::new(
        GovernorConfigBuilder::default()
            .period(period)
            .burst_size(burst)
            .use_headers()
            .finish()
            .expect("a valid governor configuration"),
    )
}

fn ours_layer(quota: Quota, headers: HeaderStyle) -> LimitRateLayer {
    LimitRateLayer::builder()
        .policy(Policy::new("default", quota))
        .headers(headers)
        .build()
        .expect("a valid configuration")
}

fn status(expected: StatusCode) -> impl Fn(&http::response::Parts, &Bytes) {
    move |parts, _| assert_eq!(parts.status, expected)
}

fn layers(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("rate_limit_vs_tower_governor");

    // A hot key, allowed.
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("bare", "hot_ip"),
        handler(),
        || ours(HOT_PEER),
        common::ok_with_len(5),
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_governor", "hot_ip"),
        governor_layer(Duration::from_nanos(1), BURST_ALLOW_ALL).layer(handler()),
        || theirs(HOT_PEER),
        common::ok_with_len(5),
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_edge_no_headers", "hot_ip"),
        ours_layer(OURS_ALLOW_ALL, HeaderStyle::Off).layer(handler()),
        || ours(HOT_PEER),
        |parts, body| {
            assert_eq!(parts.status, StatusCode::OK);
            assert_eq!(body.len(), 5);
            assert!(!parts.headers.contains_key("ratelimit"));
        },
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_edge", "hot_ip"),
        ours_layer(OURS_ALLOW_ALL, HeaderStyle::Ietf).layer(handler()),
        || ours(HOT_PEER),
        |parts, _| assert!(parts.headers.contains_key("ratelimit")),
    );

    // With headers on both sides: tower_governor's `use_headers()` (two
    // `x-ratelimit-*` headers) against ours, draft-11 (the default, above)
    // and legacy (`x-ratelimit-limit`, `-remaining`, `-reset`).
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_governor_headers", "hot_ip"),
        governor_layer_with_headers(Duration::from_nanos(1), BURST_ALLOW_ALL).layer(handler()),
        || theirs(HOT_PEER),
        |parts, _| assert!(parts.headers.contains_key("x-ratelimit-remaining")),
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_edge_legacy_headers", "hot_ip"),
        ours_layer(OURS_ALLOW_ALL, HeaderStyle::Legacy).layer(handler()),
        || ours(HOT_PEER),
        |parts, _| assert!(parts.headers.contains_key("x-ratelimit-remaining")),
    );

    // The 429 path: the first request (the check of `bench_service` is not
    // enough, it runs on the service the bench times) is spent here.
    let mut governor = governor_layer(Duration::from_secs(3600), 1).layer(handler());
    let (parts, _) = runtime.block_on(common::round_trip(&mut governor, theirs(HOT_PEER)));
    assert_eq!(parts.status, StatusCode::OK);
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_governor", "limited_ip"),
        governor,
        || theirs(HOT_PEER),
        status(StatusCode::TOO_MANY_REQUESTS),
    );
    let mut edge = ours_layer(OURS_ONE_PER_HOUR, HeaderStyle::Off).layer(handler());
    let (parts, _) = runtime.block_on(common::round_trip(&mut edge, ours(HOT_PEER)));
    assert_eq!(parts.status, StatusCode::OK);
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_edge_no_headers", "limited_ip"),
        edge,
        || ours(HOT_PEER),
        status(StatusCode::TOO_MANY_REQUESTS),
    );

    // A new key on every request.
    let counter = Cell::new(0u32);
    let next = || {
        let n = counter.get().wrapping_add(1);
        counter.set(n);
        SocketAddr::new(common::nth_ip(n), 50_000)
    };
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("bare", "new_ip"),
        handler(),
        || ours(next()),
        common::ok_with_len(5),
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_governor", "new_ip"),
        governor_layer(Duration::from_nanos(1), BURST_ALLOW_ALL).layer(handler()),
        || theirs(next()),
        status(StatusCode::OK),
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_edge_no_headers", "new_ip"),
        ours_layer(OURS_ALLOW_ALL, HeaderStyle::Off).layer(handler()),
        || ours(next()),
        status(StatusCode::OK),
    );
    group.finish();
}

/// The stores alone: our memory store against governor's keyed limiter
/// (a `DashMap` of atomics, no cap on keys), the floor.
fn stores(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit_store_vs_governor");
    let hot = HOT_PEER.ip();

    let limiter = RateLimiter::keyed(governor_allow_all());
    assert!(limiter.check_key(&hot).is_ok());
    group.bench_function("governor_check_key/hot_key", |b| {
        b.iter(|| limiter.check_key(std::hint::black_box(&hot)))
    });
    let store = MemoryStore::new();
    let key = Key::ip(hot);
    assert!(store.check_now(&key, &OURS_ALLOW_ALL, 1).is_allowed());
    group.bench_function("tower_edge_check_now/hot_key", |b| {
        b.iter(|| store.check_now(std::hint::black_box(&key), &OURS_ALLOW_ALL, 1))
    });
    // Ours through the layer's key path: the key built from the IP each time.
    group.bench_function("tower_edge_check_now_with_key/hot_key", |b| {
        b.iter(|| store.check_now(&Key::ip(std::hint::black_box(hot)), &OURS_ALLOW_ALL, 1))
    });

    let limiter = RateLimiter::keyed(governor_allow_all());
    let mut n = 0u32;
    group.bench_function("governor_check_key/new_key", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            limiter.check_key(&common::nth_ip(n))
        })
    });
    println!(
        "governor keyed limiter now holds {} keys (never swept here)",
        limiter.len()
    );
    let store = MemoryStore::new();
    let mut n = 0u32;
    group.bench_function("tower_edge_check_now/new_key", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            store.check_now(&Key::ip(common::nth_ip(n)), &OURS_ALLOW_ALL, 1)
        })
    });
    println!(
        "our memory store now holds {} keys (cap {})",
        store.len(),
        store.max_keys()
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = layers, stores
}
criterion_main!(benches);
