//! Overhead of `OverloadLayer` on the admitted path around a trivial
//! handler, against the bare handler and against tower's
//! `ConcurrencyLimit` (the same bound, enforced by a semaphore permit
//! taken in `poll_ready`). Every request is admitted: the limit is never
//! reached, so this is the price every request pays.
//!
//! `floor_body_end_guard` is the least a layer meeting the issue's
//! requirements pays (see `overload_floor/mod.rs`): admission in `call`, a
//! guard held until the body ends.
//!
//! `cargo bench --features overload --bench overload`; instruction counts:
//! `bash benches/icount.sh overload overload/bare/admitted
//! overload/tower_concurrency_limit/admitted
//! overload/floor_body_end_guard/admitted overload/tower_edge/admitted`.

mod common;
#[path = "overload_floor/mod.rs"]
mod floor;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use tower::Layer;
use tower::limit::ConcurrencyLimitLayer;
use tower_edge::overload::{AdaptiveLimit, KeyLimit, OverloadLayer, Partition};
use tower_edge::rate_limit::Global;

const LIMIT: usize = 1024;

fn overload(c: &mut Criterion) {
    let runtime = common::runtime();
    let body = Bytes::from_static(b"hello");
    let handler = || common::fixed_handler(HeaderMap::new(), body.clone());
    let request = || common::get("/hello", &[]);
    let check = common::ok_with_len(5);

    let mut group = c.benchmark_group("overload");
    let id = |name| BenchmarkId::new(name, "admitted");
    common::bench_service(&mut group, &runtime, id("bare"), handler(), request, &check);
    common::bench_service(
        &mut group,
        &runtime,
        id("tower_concurrency_limit"),
        ConcurrencyLimitLayer::new(LIMIT).layer(handler()),
        request,
        &check,
    );
    common::bench_service(
        &mut group,
        &runtime,
        id("floor_body_end_guard"),
        floor::Floor {
            inner: handler(),
            in_flight: Default::default(),
        },
        request,
        &check,
    );
    common::bench_service(
        &mut group,
        &runtime,
        id("tower_edge"),
        OverloadLayer::new(LIMIT).layer(handler()),
        request,
        &check,
    );
    let adaptive = OverloadLayer::builder()
        .adaptive(AdaptiveLimit::gradient2().initial(LIMIT).max(LIMIT * 2))
        .build()
        .expect("valid");
    common::bench_service(
        &mut group,
        &runtime,
        id("tower_edge_adaptive"),
        adaptive.layer(handler()),
        request,
        &check,
    );
    let partitioned = OverloadLayer::builder()
        .max_in_flight(LIMIT)
        .partition(Partition::authenticated(80))
        .partition(Partition::new("anonymous", 20))
        .build()
        .expect("valid");
    common::bench_service(
        &mut group,
        &runtime,
        id("tower_edge_partitioned"),
        partitioned.layer(handler()),
        request,
        &check,
    );
    let per_key = OverloadLayer::builder()
        .per_key(KeyLimit::new("global", 64).key(Global))
        .build()
        .expect("valid");
    common::bench_service(
        &mut group,
        &runtime,
        id("tower_edge_per_key"),
        per_key.layer(handler()),
        request,
        &check,
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = overload
}
criterion_main!(benches);
