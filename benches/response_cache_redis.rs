//! Hits from the response cache's Redis tier, per second, at 1, 16 and 64
//! requests in flight, for `benches/response_cache_redis.sh`, which runs
//! `redis-benchmark GET` of a value of the same size next to it (#19's
//! goal: >= 0.8x).
//!
//! Every request is a hit from Redis: the memory tier is made too small
//! to keep the 1 KiB entry (`max_memory_bytes` = `max_entry_bytes` = 1100
//! bytes, while the entry with its key and headers weighs more), so each
//! lookup goes to Redis (`HGETALL` + `TIME`, one round trip), decodes the
//! entry and answers it. Each of the requests in flight reads a key of
//! its own (`/products/<n>`, filled first): requests for one key at once
//! would wait for each other's lookup in the process (one fill per key)
//! rather than each read Redis. One backend, one multiplexed connection, a
//! current-thread runtime (as the other benches).
//!
//! ```text
//! cargo bench --features redis --bench response_cache_redis
//! ```

#[path = "common/redis_keys.rs"]
mod redis_keys;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, header};
use http_body_util::BodyExt;
use redis_keys::{delete_keys, inflight_levels, redis_rs_get_per_s, redis_url};
use tower::{Layer, Service, ServiceExt};
use tower_edge::redis::RedisBackend;
use tower_edge::response_cache::ResponseCacheLayer;

#[path = "common/mod.rs"]
mod common;

const KEYS: usize = 64;

fn path(n: usize) -> String {
    format!("/products/{n}")
}

fn main() {
    let measure = Duration::from_secs(
        std::env::var("MEASURE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3),
    );
    let runtime = common::runtime();
    let backend = RedisBackend::builder(redis_url())
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    if runtime
        .block_on(backend.ping(Duration::from_secs(2)))
        .is_err()
    {
        panic!(
            "the Redis hit bench needs Redis on {} (apt-get install redis-server)",
            redis_url()
        );
    }
    let prefix = format!("te-bench:rc:{}", std::process::id());
    let layer = ResponseCacheLayer::builder()
        .redis(backend)
        .redis_key_prefix(&prefix)
        .max_entry_bytes(1100)
        .max_memory_bytes(1100)
        .build()
        .unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let service = layer.layer(common::fixed_handler(headers, common::json_body(1024)));
    // The fills, then hits once their background stores landed in Redis.
    let mut first = String::new();
    for n in 0..KEYS {
        for _ in 0..100 {
            let response = runtime
                .block_on(service.clone().oneshot(common::get(&path(n), &[])))
                .unwrap();
            first = response.headers()["cache-status"]
                .to_str()
                .unwrap()
                .to_owned();
            runtime.block_on(response.into_body().collect()).unwrap();
            if first.contains("hit") {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert!(
        first.contains("hit") && first.contains("redis"),
        "not a hit from Redis: {first}"
    );
    let mut conn = redis::Client::open(redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*:e:*"))
        .query(&mut conn)
        .unwrap();
    let fields: Vec<Vec<u8>> = redis::cmd("HGETALL")
        .arg(&keys[0])
        .query(&mut conn)
        .unwrap();
    let value_bytes: usize = fields.iter().map(Vec::len).sum();
    println!("# cache-status of a hit: {first}; HGETALL reply {value_bytes} bytes");
    for inflight in inflight_levels() {
        let done = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        runtime.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for n in 0..inflight {
                let mut service = service.clone();
                let path = path(n);
                let done = Arc::clone(&done);
                tasks.spawn(async move {
                    while start.elapsed() < measure {
                        let response = service
                            .ready()
                            .await
                            .unwrap()
                            .call(common::get(&path, &[]))
                            .await
                            .unwrap();
                        let status = &response.headers()["cache-status"];
                        assert!(status.to_str().unwrap().contains("hit"), "{status:?}");
                        response.into_body().collect().await.unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            while tasks.join_next().await.is_some() {}
        });
        let per_s = done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64();
        println!("ours inflight={inflight} hits_per_s={per_s:.0} value_bytes={value_bytes}");
        let floor = redis_rs_get_per_s(&runtime, value_bytes, inflight, measure);
        println!("redis-rs GET inflight={inflight} rps={floor:.0}");
    }
    delete_keys(&prefix);
}
