//! Overhead of `CacheHeadersLayer` (default configuration) around a trivial
//! handler answering JSON: the ETag computed on 1 KiB and 64 KiB bodies
//! (buffer + xxh3), the 304 path (`If-None-Match` matching), and a handler
//! that already set its own ETag (passed through unbuffered).
//!
//! `cargo bench --bench cache_headers`

mod common;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use tower::Layer;
use tower_edge::cache_headers::CacheHeadersLayer;

const SIZES: [(&str, usize); 2] = [("1KiB", 1024), ("64KiB", 64 * 1024)];

fn cache_headers(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("cache_headers");

    for (label, len) in SIZES {
        let body = common::json_body(len);
        let handler = || common::fixed_handler(HeaderMap::new(), body.clone());
        let plain = || common::get("/items", &[]);

        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("bare", label),
            handler(),
            plain,
            common::ok_with_len(len),
        );
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("etag", label),
            CacheHeadersLayer::new().layer(handler()),
            plain,
            move |parts, body| {
                assert_eq!(parts.status, StatusCode::OK);
                assert!(parts.headers.contains_key(header::ETAG));
                assert_eq!(body.len(), len);
            },
        );

        let mut layered = CacheHeadersLayer::new().layer(handler());
        let (parts, _) = runtime.block_on(common::round_trip(&mut layered, plain()));
        let etag = parts.headers[header::ETAG].clone();
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("not_modified", label),
            layered,
            || common::get("/items", &[(header::IF_NONE_MATCH, etag.clone())]),
            |parts, body| {
                assert_eq!(parts.status, StatusCode::NOT_MODIFIED);
                assert!(body.is_empty());
            },
        );
    }

    // The handler set its own ETag: the layer must not buffer or hash.
    let body = common::json_body(1024);
    let mut own = HeaderMap::new();
    own.insert(header::ETAG, HeaderValue::from_static("\"v42\""));
    let handler = || common::fixed_handler(own.clone(), body.clone());
    let plain = || common::get("/items", &[]);
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("bare_handler_etag", "1KiB"),
        handler(),
        plain,
        common::ok_with_len(1024),
    );
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("handler_etag", "1KiB"),
        CacheHeadersLayer::new().layer(handler()),
        plain,
        |parts, body| {
            assert_eq!(parts.headers[header::ETAG], "\"v42\"");
            assert_eq!(body.len(), 1024);
        },
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = cache_headers
}
criterion_main!(benches);
