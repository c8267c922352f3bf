//! Helpers shared by every bench file (`benches/<layer>.rs` here, and the
//! peer comparisons in `benches/peers/benches/`, which include this file by
//! path).
//!
//! Every bench drives a service the way a server does: `ready().await`, then
//! `call(request).await`, then the response body is collected, on a
//! current-thread tokio runtime, in batches timed with
//! [`criterion::Bencher::iter_custom`]. The inner service is
//! [`fixed_handler`]: a `tower::service_fn` that answers with a fixed
//! response, so a bench measures the layer and nothing else. Compare each
//! layered figure with the `bare` figure of the same group.

#![allow(dead_code)] // each bench file uses a different subset

use std::convert::Infallible;
use std::fmt::Debug;
use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId};
use http::response::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use tokio::runtime::Runtime;
use tower::{Service, ServiceExt};

/// The request body type of every bench: requests carry no body.
pub type ReqBody = Empty<Bytes>;

/// The current-thread runtime the services are driven on.
pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread tokio runtime")
}

/// The future of [`fixed_handler`], named so that callers needing a
/// `Send` future (the response cache) see it is one.
pub type Fixed = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// The trivial inner service: answers every request with `200`, `headers`
/// and `body` (a cheap `Bytes` clone, no allocation per request beyond the
/// response itself).
pub fn fixed_handler(
    headers: HeaderMap,
    body: Bytes,
) -> impl Service<Request<ReqBody>, Response = Response<Full<Bytes>>, Error = Infallible, Future = Fixed>
+ Clone
+ Send
+ 'static {
    tower::service_fn(move |_request: Request<ReqBody>| {
        let mut response = Response::new(Full::new(body.clone()));
        if !headers.is_empty() {
            *response.headers_mut() = headers.clone();
        }
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

/// A GET request for `path` with the given headers.
pub fn get(path: &str, headers: &[(HeaderName, HeaderValue)]) -> Request<ReqBody> {
    let mut request = Request::get(path)
        .body(Empty::new())
        .expect("a valid request");
    for (name, value) in headers {
        request.headers_mut().insert(name.clone(), value.clone());
    }
    request
}

/// A JSON array of objects, `len` bytes long: a realistic API response body.
pub fn json_body(len: usize) -> Bytes {
    let mut out = String::with_capacity(len);
    out.push('[');
    let mut i = 0u64;
    loop {
        let item = format!(
            r#"{{"id":{i},"name":"item {i}","price":{}.{:02}}},"#,
            i * 7,
            i % 100
        );
        if out.len() + item.len() + 1 > len {
            break;
        }
        out.push_str(&item);
        i += 1;
    }
    if out.ends_with(',') {
        out.pop();
    }
    out.push(']');
    while out.len() < len {
        out.push(' ');
    }
    assert_eq!(out.len(), len);
    Bytes::from(out)
}

/// One request through `service`: ready, call, collect the body.
pub async fn round_trip<S, B>(service: &mut S, request: Request<ReqBody>) -> (Parts, Bytes)
where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    let response = service
        .ready()
        .await
        .expect("the service is ready")
        .call(request)
        .await
        .expect("the service answers");
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("the body").to_bytes();
    (parts, bytes)
}

/// Benchmarks `service` under `id` in `group`.
///
/// `make_request` builds each request (its cost is in every figure of the
/// group alike, the `bare` baseline included). `check` runs once on a real
/// response before timing starts, so a bench cannot silently measure the
/// wrong path (a 200 where a 304 was meant, a missing header...).
pub fn bench_service<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &Runtime,
    id: BenchmarkId,
    mut service: S,
    make_request: impl Fn() -> Request<ReqBody>,
    check: impl Fn(&Parts, &Bytes),
) where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    let (parts, body) = runtime.block_on(round_trip(&mut service, make_request()));
    check(&parts, &body);

    let icount = icount_iters();
    let mut counted = false;
    group.bench_function(id, |bencher| {
        bencher.iter_custom(|iters| {
            if let Some(n) = icount {
                // Instruction-count mode (benches/icount.sh): the first call
                // runs `n` requests inside `icount_loop`, the only code
                // callgrind counts; criterion's other calls do nothing.
                if !counted {
                    counted = true;
                    icount_loop(runtime, n, &mut service, &make_request);
                }
                return Duration::from_nanos(iters);
            }
            runtime.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let request = black_box(make_request());
                    black_box(round_trip(&mut service, request).await);
                }
                start.elapsed()
            })
        })
    });
}

/// `BENCH_ICOUNT_ITERS`: set by `benches/icount.sh` to count instructions
/// under callgrind instead of timing.
fn icount_iters() -> Option<u64> {
    let value = std::env::var("BENCH_ICOUNT_ITERS").ok()?;
    Some(value.parse().expect("BENCH_ICOUNT_ITERS is a number"))
}

/// `n` round trips; `benches/icount.sh` tells callgrind to count only the
/// instructions executed inside this function.
/// (A plain function around `block_on`: the poll function of an async fn
/// would be inlined into the runtime and escape the count.)
#[inline(never)]
fn icount_loop<S, B>(
    runtime: &Runtime,
    n: u64,
    service: &mut S,
    make_request: &impl Fn() -> Request<ReqBody>,
) where
    S: Service<Request<ReqBody>, Response = Response<B>>,
    S::Error: Debug,
    B: Body,
    B::Error: Debug,
{
    runtime.block_on(async {
        for _ in 0..n {
            let request = black_box(make_request());
            black_box(round_trip(service, request).await);
        }
    });
}

/// The `n`-th address of 10.0.0.0/8 (2²⁴ distinct addresses, then wraps):
/// a new client IP per request.
pub fn nth_ip(n: u32) -> std::net::IpAddr {
    let [_, a, b, c] = n.to_be_bytes();
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, a, b, c))
}

/// This process's resident set size (`VmRSS`), in bytes. Linux only.
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status")
        .expect("this bench reads /proc/self/status (Linux only)");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Criterion settings shared by all benches; command-line flags
/// (`--warm-up-time`, `--measurement-time`) override them.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
}

/// `check` for a plain `200` with a body of `len` bytes.
pub fn ok_with_len(len: usize) -> impl Fn(&Parts, &Bytes) {
    move |parts, body| {
        assert_eq!(parts.status, http::StatusCode::OK);
        assert_eq!(body.len(), len);
    }
}
