//! Overhead of `LimitRateLayer` (in-memory store) around a trivial handler:
//! a hot client IP that stays allowed, a client IP whose quota is exhausted
//! (the 429 path), an authenticated subject (`SubjectOrIp`), and a new
//! client IP on every request. The `rate_limit_store` group times
//! `MemoryStore::check_now` alone on a hot key and on new keys.
//!
//! `cargo bench --bench rate_limit`

mod common;

use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, StatusCode};
use tower::Layer;
use tower_edge::Subject;
use tower_edge::rate_limit::{
    Key, LimitRateLayer, MemoryStore, PeerAddr, Policy, Quota, SubjectOrIp,
};

/// Effectively unlimited (one cell per nanosecond, bursts of 10⁹): a hot
/// key stays allowed however fast the bench goes.
const ALLOW_ALL: Quota = Quota::per_second(1_000_000_000);
/// One request per hour: after the first, every request is limited.
const ONE_PER_HOUR: Quota = Quota::per_hour(1);

const HOT_PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 50_000);

fn with_peer(peer: SocketAddr) -> http::Request<common::ReqBody> {
    let mut request = common::get("/hello", &[]);
    request.extensions_mut().insert(PeerAddr(peer));
    request
}

fn rate_limit(c: &mut Criterion) {
    let runtime = common::runtime();
    let body = Bytes::from_static(b"hello");
    let handler = || common::fixed_handler(HeaderMap::new(), body.clone());
    let hot = || with_peer(HOT_PEER);
    let subject = || {
        let mut request = with_peer(HOT_PEER);
        request.extensions_mut().insert(Subject::new("user-42"));
        request
    };
    let counter = Cell::new(0u32);
    let new_ip = || {
        let n = counter.get().wrapping_add(1);
        counter.set(n);
        with_peer(SocketAddr::new(common::nth_ip(n), 50_000))
    };
    let allowed = |parts: &http::response::Parts, body: &Bytes| {
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(body.len(), 5);
        assert!(parts.headers.contains_key("ratelimit"));
    };

    let mut group = c.benchmark_group("rate_limit");

    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("bare", "hot_ip"),
        handler(),
        hot,
        common::ok_with_len(5),
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_edge", "hot_ip"),
        LimitRateLayer::new(ALLOW_ALL).layer(handler()),
        hot,
        allowed,
    );

    // The 429 path: the quota of the hot IP is used up by the check request.
    let limited = LimitRateLayer::new(ONE_PER_HOUR);
    let mut first = limited.layer(handler());
    let (parts, _) = runtime.block_on(common::round_trip(&mut first, hot()));
    assert_eq!(parts.status, StatusCode::OK);
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_edge", "limited_ip"),
        limited.layer(handler()),
        hot,
        |parts, _| {
            assert_eq!(parts.status, StatusCode::TOO_MANY_REQUESTS);
            assert!(parts.headers.contains_key("retry-after"));
        },
    );

    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("bare", "subject"),
        handler(),
        subject,
        common::ok_with_len(5),
    );
    let by_subject = LimitRateLayer::builder()
        .policy(Policy::new("user", ALLOW_ALL).key(SubjectOrIp))
        .build()
        .expect("a valid configuration");
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_edge", "subject"),
        by_subject.layer(handler()),
        subject,
        allowed,
    );

    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("bare", "new_ip"),
        handler(),
        new_ip,
        common::ok_with_len(5),
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_edge", "new_ip"),
        LimitRateLayer::new(ALLOW_ALL).layer(handler()),
        new_ip,
        allowed,
    );
    group.finish();
}

/// The memory store alone: what the layer pays for the GCRA check itself.
fn store(c: &mut Criterion) {
    let mut group = c.benchmark_group("rate_limit_store");
    let store = MemoryStore::new();
    let hot = Key::ip(HOT_PEER.ip());
    assert!(store.check_now(&hot, &ALLOW_ALL, 1).is_allowed());
    group.bench_function("memory_hot_key", |b| {
        b.iter(|| store.check_now(std::hint::black_box(&hot), &ALLOW_ALL, 1))
    });

    // Default cap (100 000 keys) and sweep interval: new keys pay the
    // amortised cleanup.
    let store = MemoryStore::new();
    let mut n = 0u32;
    group.bench_function("memory_new_key", |b| {
        b.iter(|| {
            n = n.wrapping_add(1);
            store.check_now(&Key::ip(common::nth_ip(n)), &ALLOW_ALL, 1)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = rate_limit, store
}
criterion_main!(benches);
