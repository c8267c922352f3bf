//! `CorrelationIdLayer` against tower-http's `SetRequestIdLayer` +
//! `PropagateRequestIdLayer` pair (`MakeRequestUuid`), the usual way to get
//! the same job done: a valid incoming `x-request-id` kept and echoed, and
//! a fresh one generated for a request that brought none.
//!
//! tower-http's `MakeRequestUuid` calls `Uuid::new_v4()`. In this build
//! `uuid` has `fast-rng` (tower-edge turns it on, and Cargo unifies
//! features), so that draws from `rand`'s thread-local CSPRNG; an
//! application without `fast-rng` anywhere in its graph gets one OS
//! `getrandom` call per request instead. `tower_http_os_rng` measures that
//! case: the same code as `MakeRequestUuid` with the random bytes taken
//! from the OS.
//!
//! `cd benches/peers && cargo bench --bench correlation_peers`

#[path = "../../common/mod.rs"]
mod common;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use tower::Layer;
use tower_edge::correlation::CorrelationIdLayer;
use tower_http::request_id::{
    MakeRequestId, MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const INCOMING: HeaderValue = HeaderValue::from_static("4bf92f3577b34da6a3ce929d0e0e4736");

/// tower-http's `MakeRequestUuid` as it behaves without `uuid/fast-rng`:
/// 16 random bytes from the OS per request.
#[derive(Clone, Copy)]
struct UuidFromOs;

impl MakeRequestId for UuidFromOs {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("randomness from the OS");
        let uuid = uuid::Builder::from_random_bytes(bytes).into_uuid();
        Some(RequestId::new(
            uuid.to_string().parse().expect("a UUID is a header value"),
        ))
    }
}

fn correlation_vs_tower_http(c: &mut Criterion) {
    let runtime = common::runtime();
    let body = Bytes::from_static(b"hello");
    let handler = || common::fixed_handler(HeaderMap::new(), body.clone());
    let tower_http = |make: MakeRequestUuid| {
        SetRequestIdLayer::x_request_id(make)
            .layer(PropagateRequestIdLayer::x_request_id().layer(handler()))
    };
    let tower_http_os = || {
        SetRequestIdLayer::x_request_id(UuidFromOs)
            .layer(PropagateRequestIdLayer::x_request_id().layer(handler()))
    };

    let mut group = c.benchmark_group("correlation_vs_tower_http");
    for (case, with_header) in [("valid_incoming", true), ("generated", false)] {
        let make_request = move || {
            if with_header {
                common::get("/hello", &[(X_REQUEST_ID, INCOMING)])
            } else {
                common::get("/hello", &[])
            }
        };
        let check = move |parts: &http::response::Parts, _: &Bytes| {
            let echoed = &parts.headers[&X_REQUEST_ID];
            if with_header {
                assert_eq!(echoed, INCOMING);
            } else {
                assert_eq!(echoed.len(), 36, "a fresh UUID is echoed");
            }
        };
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("bare", case),
            handler(),
            make_request,
            common::ok_with_len(5),
        );
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("tower_edge", case),
            CorrelationIdLayer::new().layer(handler()),
            make_request,
            check,
        );
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("tower_http", case),
            tower_http(MakeRequestUuid),
            make_request,
            check,
        );
        if !with_header {
            common::bench_service(
                &mut group,
                &runtime,
                BenchmarkId::new("tower_http_os_rng", case),
                tower_http_os(),
                make_request,
                check,
            );
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = correlation_vs_tower_http
}
criterion_main!(benches);
