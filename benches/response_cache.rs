//! A memory hit of `ResponseCacheLayer` against a bare handler returning
//! the same pre-built 1 KiB body (the goal: at most 1.2x its instructions,
//! `benches/icount.sh response_cache response_cache/bare/1KiB
//! response_cache/memory_hit/1KiB`).
//!
//! `cargo bench --features response-cache --bench response_cache`

mod common;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tower::Layer;
use tower_edge::response_cache::ResponseCacheLayer;

fn response_cache(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("response_cache");
    let len = 1024;
    let body = common::json_body(len);
    let mut fields = HeaderMap::new();
    fields.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    let handler = || common::fixed_handler(fields.clone(), body.clone());
    let request = || common::get("/products", &[]);

    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("bare", "1KiB"),
        handler(),
        request,
        common::ok_with_len(len),
    );

    // Inside the runtime: the cache reads tokio's clock.
    let mut cached = {
        let _entered = runtime.enter();
        ResponseCacheLayer::new().layer(handler())
    };
    runtime.block_on(common::round_trip(&mut cached, request()));
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("memory_hit", "1KiB"),
        cached,
        request,
        move |parts, body| {
            assert_eq!(parts.status, StatusCode::OK);
            let status = parts.headers["cache-status"].to_str().unwrap();
            assert!(status.starts_with("tower-edge; hit"), "{status}");
            assert_eq!(body.len(), len);
        },
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = response_cache
}
criterion_main!(benches);
