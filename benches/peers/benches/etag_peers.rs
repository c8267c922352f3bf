//! `CacheHeadersLayer`'s ETag path against the floor of the same job.
//!
//! No ETag middleware on crates.io fits here: `tower-etag-cache` is built
//! on `http` 0.2 / hyper 0.14 (it cannot wrap an `http` 1 service) and is
//! a server-side response cache rather than a validator layer; the ETag
//! middlewares of `loco-rs` and `rustango` are parts of whole frameworks,
//! tied to their own router types. So the comparison is against the floor:
//! `xxh3_floor` collects the body, hashes it with xxh3 by hand, sets the
//! tag and compares `If-None-Match` byte for byte — no policy, no parsing,
//! no RFC 9110 evaluation. What tower-edge costs above it is the price of
//! doing the job correctly.
//!
//! `cd benches/peers && cargo bench --bench etag_peers`

#[path = "../../common/mod.rs"]
mod common;

use std::convert::Infallible;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_edge::cache_headers::CacheHeadersLayer;

/// The floor: buffer, xxh3, tag, compare, with no error handling beyond
/// what the types demand.
fn xxh3_floor<S>(
    inner: S,
) -> impl Service<Request<common::ReqBody>, Response = Response<Full<Bytes>>, Error = Infallible>
where
    S: Service<Request<common::ReqBody>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone,
{
    tower::service_fn(move |request: Request<common::ReqBody>| {
        let if_none_match = request.headers().get(header::IF_NONE_MATCH).cloned();
        let inner = inner.clone();
        async move {
            let response = inner.oneshot(request).await?;
            let (mut parts, body) = response.into_parts();
            let bytes = body.collect().await?.to_bytes();
            let tag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&bytes));
            let tag = HeaderValue::from_str(&tag).expect("hex is a header value");
            if if_none_match.as_ref() == Some(&tag) {
                parts.status = StatusCode::NOT_MODIFIED;
                parts.headers.insert(header::ETAG, tag);
                return Ok(Response::from_parts(parts, Full::default()));
            }
            parts.headers.insert(header::ETAG, tag);
            Ok(Response::from_parts(parts, Full::new(bytes)))
        }
    })
}

fn etag_vs_floor(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("etag_vs_floor");
    for (label, len) in [("1KiB", 1024), ("64KiB", 64 * 1024)] {
        let body = common::json_body(len);
        let handler = || common::fixed_handler(HeaderMap::new(), body.clone());
        let plain = || common::get("/items", &[]);
        let tagged = move |parts: &http::response::Parts, body: &Bytes| {
            assert_eq!(parts.status, StatusCode::OK);
            assert!(parts.headers.contains_key(header::ETAG));
            assert_eq!(body.len(), len);
        };
        let not_modified = |parts: &http::response::Parts, body: &Bytes| {
            assert_eq!(parts.status, StatusCode::NOT_MODIFIED);
            assert!(body.is_empty());
        };

        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("bare", label),
            handler(),
            plain,
            common::ok_with_len(len),
        );

        let mut ours = CacheHeadersLayer::new().layer(handler());
        let (parts, _) = runtime.block_on(common::round_trip(&mut ours, plain()));
        let our_tag = parts.headers[header::ETAG].clone();
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("tower_edge", label),
            CacheHeadersLayer::new().layer(handler()),
            plain,
            tagged,
        );
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("tower_edge_304", label),
            ours,
            || common::get("/items", &[(header::IF_NONE_MATCH, our_tag.clone())]),
            not_modified,
        );

        let mut floor = xxh3_floor(handler());
        let (parts, _) = runtime.block_on(common::round_trip(&mut floor, plain()));
        let floor_tag = parts.headers[header::ETAG].clone();
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("xxh3_floor", label),
            xxh3_floor(handler()),
            plain,
            tagged,
        );
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new("xxh3_floor_304", label),
            floor,
            || common::get("/items", &[(header::IF_NONE_MATCH, floor_tag.clone())]),
            not_modified,
        );
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = etag_vs_floor
}
criterion_main!(benches);
