//! Overhead of `CorrelationIdLayer` (default configuration) around a
//! trivial handler: a valid incoming `x-request-id` kept, and one generated
//! (UUID v7) for a request that brought none.
//!
//! `cargo bench --bench correlation` (the `correlation_generator` group
//! times the ID generators alone).

mod common;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use tower::Layer;
use tower_edge::correlation::{CorrelationIdLayer, MakeCorrelationId, UuidV4, UuidV7};

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const INCOMING: HeaderValue = HeaderValue::from_static("4bf92f3577b34da6a3ce929d0e0e4736");

fn correlation(c: &mut Criterion) {
    let runtime = common::runtime();
    let body = Bytes::from_static(b"hello");
    let handler = || common::fixed_handler(HeaderMap::new(), body.clone());
    let with_id = || common::get("/hello", &[(X_REQUEST_ID, INCOMING)]);
    let without_id = || common::get("/hello", &[]);

    let mut group = c.benchmark_group("correlation");
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("bare", "valid_incoming"),
        handler(),
        with_id,
        common::ok_with_len(5),
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_edge", "valid_incoming"),
        CorrelationIdLayer::new().layer(handler()),
        with_id,
        |parts, _| assert_eq!(parts.headers[&X_REQUEST_ID], INCOMING),
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("bare", "generated"),
        handler(),
        without_id,
        common::ok_with_len(5),
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("tower_edge", "generated"),
        CorrelationIdLayer::new().layer(handler()),
        without_id,
        |parts, _| {
            let id = parts.headers[&X_REQUEST_ID].to_str().unwrap();
            assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
        },
    );
    group.finish();
}

/// The generators alone: what `generated` pays on top of `valid_incoming`.
fn generators(c: &mut Criterion) {
    let mut group = c.benchmark_group("correlation_generator");
    group.bench_function("uuid_v7", |b| b.iter(|| UuidV7.make_correlation_id()));
    group.bench_function("uuid_v4", |b| b.iter(|| UuidV4.make_correlation_id()));
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = correlation, generators
}
criterion_main!(benches);
