//! Overhead of `IdempotencyLayer` around a trivial `POST` handler (an
//! 80-byte JSON order): the first request with a key (claim, run, store)
//! and a replay, with the memory store and — when Redis answers on
//! `REDIS_URL` (default `redis://127.0.0.1:6379`) — the Redis store;
//! against the bare handler.
//!
//! `cargo bench --bench idempotency` (criterion);
//! `cargo bench --bench idempotency -- replay-throughput` prints replays
//! per second from Redis at 1, 16 and 64 in flight (one backend, one
//! multiplexed connection), for `benches/idempotency_redis.sh`, which
//! runs `redis-benchmark GET` of a value of the same size next to it.

mod common;
#[path = "common/redis_keys.rs"]
mod redis_keys;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use redis_keys::{delete_keys, inflight_levels, redis_rs_get_per_s, redis_url};
use tower::{Layer, Service, ServiceExt};
use tower_edge::idempotency::{IdempotencyLayer, RedisStore, RequestBody};
use tower_edge::rate_limit::PeerAddr;
use tower_edge::redis::RedisBackend;

const ORDER: &[u8] =
    br#"{"id":"0190b6f2-6a3e-7c3a-9d2e-1f0a2b3c4d5e","product_id":1,"quantity":2}"#;

type Req = Request<RequestBody<Empty<Bytes>>>;
type Ready = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

fn handler()
-> impl Service<Req, Response = Response<Full<Bytes>>, Error = Infallible, Future = Ready>
+ Clone
+ Send
+ 'static {
    tower::service_fn(|_request: Req| {
        let mut response = Response::new(Full::new(Bytes::from_static(ORDER)));
        response
            .headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

fn post(key: HeaderValue) -> Request<Empty<Bytes>> {
    let mut request = Request::post("/orders")
        .header("idempotency-key", key)
        .body(Empty::new())
        .unwrap();
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::from(([192, 0, 2, 1], 4000))));
    request
}

/// A new key per call (the first request of each).
fn fresh_key(counter: &AtomicU64) -> HeaderValue {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    HeaderValue::from_str(&format!("\"k-{n:016x}\"")).unwrap()
}

const REPLAYED: HeaderValue = HeaderValue::from_static("\"replayed-key\"");

/// A Redis store under a prefix of this run, or `None` when Redis is away.
fn redis_store(runtime: &tokio::runtime::Runtime) -> Option<(RedisStore, String)> {
    let backend = RedisBackend::builder(redis_url())
        .timeout(Duration::from_millis(200))
        .build()
        .ok()?;
    runtime
        .block_on(backend.ping(Duration::from_secs(2)))
        .ok()?;
    let prefix = format!("te-bench:idem:{}", std::process::id());
    let store = RedisStore::with_backend(backend)
        .key_prefix(&prefix)
        .build()
        .ok()?;
    Some((store, prefix))
}

fn layer_on(store: Option<RedisStore>) -> IdempotencyLayer {
    let builder = IdempotencyLayer::builder()
        // Short-lived bench keys: nothing lingers in a shared Redis.
        .retention(Duration::from_secs(120))
        .lease(Duration::from_secs(10));
    match store {
        Some(store) => builder.store(store),
        None => builder,
    }
    .build()
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("idempotency");
    let check = |replayed: bool| {
        move |parts: &http::response::Parts, body: &Bytes| {
            assert_eq!(parts.status, StatusCode::OK);
            assert_eq!(body.as_ref(), ORDER);
            assert_eq!(parts.headers.contains_key("idempotent-replayed"), replayed);
        }
    };
    let counter = Arc::new(AtomicU64::new(0));
    common::bench_service(
        &mut group,
        &runtime,
        BenchmarkId::new("bare", "post"),
        common::fixed_handler(HeaderMap::new(), Bytes::from_static(ORDER)),
        || post(REPLAYED),
        common::ok_with_len(ORDER.len()),
    );
    let redis = redis_store(&runtime);
    if redis.is_none() {
        println!("# no Redis on {}: the redis cases are skipped", redis_url());
    }
    let stores: Vec<(&str, Option<RedisStore>)> = std::iter::once(("memory", None))
        .chain(
            redis
                .as_ref()
                .map(|(store, _)| ("redis", Some(store.clone()))),
        )
        .collect();
    for (name, store) in stores {
        let service = layer_on(store).layer(handler());
        let c1 = Arc::clone(&counter);
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new(name, "first"),
            service.clone(),
            move || post(fresh_key(&c1)),
            check(false),
        );
        // The first request of the replayed key, then replays.
        runtime
            .block_on(service.clone().oneshot(post(REPLAYED)))
            .unwrap();
        common::bench_service(
            &mut group,
            &runtime,
            BenchmarkId::new(name, "replay"),
            service,
            || post(REPLAYED),
            check(true),
        );
    }
    group.finish();
    if let Some((_, prefix)) = redis {
        delete_keys(&prefix);
    }
}

/// Replays per second from Redis with `inflight` requests at once.
fn replay_throughput(measure: Duration) {
    let runtime = common::runtime();
    let Some((store, prefix)) = redis_store(&runtime) else {
        panic!(
            "replay-throughput needs Redis on {} (apt-get install redis-server)",
            redis_url()
        );
    };
    let service = layer_on(Some(store)).layer(handler());
    runtime
        .block_on(service.clone().oneshot(post(REPLAYED)))
        .unwrap();
    // What the claim's `SET NX GET` sends back for a replay: the stored
    // value (state, fingerprint, outcome).
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query(&mut conn)
        .unwrap();
    let value: Vec<u8> = redis::cmd("GET").arg(&keys[0]).query(&mut conn).unwrap();
    println!("# stored outcome: {} bytes (key {})", value.len(), keys[0]);
    for inflight in inflight_levels() {
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..inflight {
                let mut service = service.clone();
                let done = Arc::clone(&done);
                tasks.spawn(async move {
                    while start.elapsed() < measure {
                        let response = service
                            .ready()
                            .await
                            .unwrap()
                            .call(post(REPLAYED))
                            .await
                            .unwrap();
                        assert!(response.headers().contains_key("idempotent-replayed"));
                        response.into_body().collect().await.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        });
        let per_s = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
        println!(
            "ours inflight={inflight} replays_per_s={per_s:.0} value_bytes={}",
            value.len()
        );
        let floor = redis_rs_get_per_s(&runtime, value.len(), inflight, measure);
        println!("redis-rs GET inflight={inflight} rps={floor:.0}");
    }
    delete_keys(&prefix);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "replay-throughput") {
        let secs = std::env::var("MEASURE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3);
        replay_throughput(Duration::from_secs(secs));
        return;
    }
    let mut criterion = common::criterion().configure_from_args();
    bench(&mut criterion);
    criterion.final_summary();
}
