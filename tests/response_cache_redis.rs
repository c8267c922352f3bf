//! The response cache's Redis tier against real Redis servers (features
//! `response-cache` and `redis`): one fill across replicas, purges seen by
//! every replica, and Redis down.
//!
//! Needs a Redis on 127.0.0.1:6379 (`.ci/run` starts one) and
//! `redis-server` on the PATH for the outage test. Each test uses its own
//! key prefix.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, Service, ServiceExt};
use tower_edge::redis::RedisBackend;
use tower_edge::response_cache::{CacheBody, ResponseCacheHandle, ResponseCacheLayer};

mod support;
use support::redis::{OwnRedis, SHARED, keys_eventually, lease_left, shared_redis, unique_prefix};

type Inner = tower::util::BoxCloneService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;
type Replica = tower_edge::response_cache::ResponseCache<Inner>;

/// One replica: its own layer (its own memory tier) on the Redis at `url`
/// under `prefix`, around a handler that counts its calls in `calls` and
/// takes `delay`.
fn replica(
    url: &str,
    prefix: &str,
    calls: &Arc<AtomicUsize>,
    delay: Duration,
) -> (Replica, ResponseCacheHandle) {
    replica_waiting(url, prefix, calls, delay, Duration::from_secs(5))
}

/// [`replica`] whose requests wait at most `lock_timeout` for another
/// replica's fill.
fn replica_waiting(
    url: &str,
    prefix: &str,
    calls: &Arc<AtomicUsize>,
    delay: Duration,
    lock_timeout: Duration,
) -> (Replica, ResponseCacheHandle) {
    replica_with(url, prefix, calls, delay, lock_timeout, None)
}

/// [`replica_waiting`] with a memory tier of `max_memory_bytes` (and the
/// same cap per entry): 64 keeps no entry in memory (an entry counts at
/// least 256 bytes there), so every hit comes from Redis.
fn replica_with(
    url: &str,
    prefix: &str,
    calls: &Arc<AtomicUsize>,
    delay: Duration,
    lock_timeout: Duration,
    max_memory_bytes: Option<usize>,
) -> (Replica, ResponseCacheHandle) {
    let backend = RedisBackend::builder(url)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let mut builder = ResponseCacheLayer::builder()
        .redis(backend)
        .redis_key_prefix(prefix)
        .lock_timeout(lock_timeout);
    if let Some(bytes) = max_memory_bytes {
        builder = builder.max_entry_bytes(bytes).max_memory_bytes(bytes);
    }
    let layer = builder.build().unwrap();
    let calls = Arc::clone(calls);
    let inner = tower::service_fn(move |req: Request<Full<Bytes>>| {
        calls.fetch_add(1, Ordering::SeqCst);
        let path = req.uri().path().to_owned();
        let put = req.method() == http::Method::PUT;
        async move {
            tokio::time::sleep(delay).await;
            let mut response = Response::new(Full::from(path));
            if put {
                response.headers_mut().insert(
                    "cache-group-invalidation",
                    http::HeaderValue::from_static("\"products\""),
                );
            } else {
                response.headers_mut().insert(
                    "cache-control",
                    http::HeaderValue::from_static("public, max-age=5"),
                );
                response.headers_mut().insert(
                    "edge-cache-control",
                    http::HeaderValue::from_static("max-age=30"),
                );
                response.headers_mut().insert(
                    "cache-groups",
                    http::HeaderValue::from_static("\"products\""),
                );
            }
            Ok::<_, Infallible>(response)
        }
    });
    (
        layer.layer(tower::util::BoxCloneService::new(inner)),
        layer.handle(),
    )
}

/// The response to `method uri`.
async fn call(svc: &mut Replica, method: &str, uri: &str) -> Response<CacheBody<Full<Bytes>>> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Full::default())
        .unwrap();
    svc.ready().await.unwrap().call(request).await.unwrap()
}

fn cache_status<B>(response: &Response<B>) -> String {
    response.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn send(svc: &mut Replica, method: &str, uri: &str) -> (StatusCode, String, String) {
    let response = call(svc, method, uri).await;
    let status = response.status();
    let cache_status = cache_status(&response);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        cache_status,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

/// `Cache-Status` and `Age` of a GET of `uri`.
async fn status_and_age(svc: &mut Replica, uri: &str) -> (String, u64) {
    let response = call(svc, "GET", uri).await;
    let age = response
        .headers()
        .get("age")
        .map_or(0, |v| v.to_str().unwrap().parse().unwrap());
    (cache_status(&response), age)
}

// Ages in the Redis tier count from Redis's `TIME` at the store (RFC 9111
// §4.2.3), whichever replica stored and reads. A replica samples Redis's
// clock with a lookup at most once a second and estimates it in between:
// a hit's `Age` is the same with a fresh sample and with the estimate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_hits_count_their_age_from_the_store_on_another_replica() {
    shared_redis();
    let prefix = unique_prefix("rc-age");
    let calls = Arc::new(AtomicUsize::new(0));
    let (mut a, _) = replica(SHARED, &prefix, &calls, Duration::ZERO);
    // No memory tier to speak of: every hit of `b` comes from Redis.
    let (mut b, _) = replica_with(
        SHARED,
        &prefix,
        &calls,
        Duration::ZERO,
        Duration::from_secs(5),
        Some(64),
    );
    send(&mut a, "GET", "/aged").await;
    // The store reaches Redis in the background.
    eventually(&mut b, "/aged", |status| status.contains("hit")).await;
    let (status, first) = status_and_age(&mut b, "/aged").await;
    assert!(status.contains("hit"), "{status}");
    assert!(first <= 1, "age {first} right after the store");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    // The first of these samples the clock again (its sample is over a
    // second old), the next ones read the estimate.
    for _ in 0..3 {
        let (status, age) = status_and_age(&mut b, "/aged").await;
        assert!(
            status.contains("hit") && status.contains("redis"),
            "{status}"
        );
        assert!(
            (first + 2..=first + 3).contains(&age),
            "age {age}, {first} about 2.1 s before"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one fill");
}

// One fill per key across replicas: 100 concurrent cold requests spread
// over two services sharing Redis run the handler once (the other
// replica waits on the fill lease, then reads the entry from Redis).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fill_across_two_replicas() {
    shared_redis();
    let prefix = unique_prefix("rc-fill");
    let calls = Arc::new(AtomicUsize::new(0));
    let (a, _) = replica(SHARED, &prefix, &calls, Duration::from_millis(300));
    let (b, _) = replica(SHARED, &prefix, &calls, Duration::from_millis(300));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let mut svc = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move { send(&mut svc, "GET", "/products/1").await })
        })
        .collect();
    let mut from_redis = 0;
    for task in tasks {
        let (status, cache_status, body) = task.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, "/products/1");
        from_redis += usize::from(cache_status.contains("detail=redis"));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one handler run for both replicas"
    );
    assert!(
        from_redis >= 1,
        "the other replica read the entry from Redis"
    );
}

/// Sends GETs to `svc` until `done` says the answer is what the test
/// waits for (pub/sub delivery is asynchronous), at most 5 s.
async fn eventually(svc: &mut Replica, uri: &str, done: impl Fn(&str) -> bool) -> String {
    for _ in 0..100 {
        let (_, cache_status, _) = send(svc, "GET", uri).await;
        if done(&cache_status) {
            return cache_status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{uri} never got there");
}

// RFC 9875 §3: a `Cache-Group-Invalidation` on one replica purges the
// group in Redis and in every replica's memory tier.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_purge_on_one_replica_is_seen_by_the_other() {
    shared_redis();
    let prefix = unique_prefix("rc-purge");
    let calls = Arc::new(AtomicUsize::new(0));
    let (mut a, _) = replica(SHARED, &prefix, &calls, Duration::ZERO);
    let (mut b, handle_b) = replica(SHARED, &prefix, &calls, Duration::ZERO);
    send(&mut a, "GET", "/products/1").await;
    // B reads it from Redis, then from its memory tier.
    let (_, from_redis, _) = send(&mut b, "GET", "/products/1").await;
    assert!(
        from_redis.contains("hit") && from_redis.contains("redis"),
        "{from_redis}"
    );
    // B's purge subscription, opened by its first request, clears its
    // memory tier once when it starts (a purge may have been missed
    // before): on a loaded machine that can come after the entry was
    // kept, and B reads Redis once more. (CI saw it on 2026-12-03.)
    eventually(&mut b, "/products/1", |s| {
        s.contains("hit") && !s.contains("redis")
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    // A's PUT invalidates the group: B's memory entry goes.
    send(&mut a, "PUT", "/products/1").await;
    eventually(&mut b, "/products/1", |s| !s.contains("hit")).await;
    assert!(calls.load(Ordering::SeqCst) >= 3);
    // And a purge in code on B reaches A.
    send(&mut a, "GET", "/products/2").await;
    // Once B reads it, it is in Redis (stores are written in the
    // background).
    eventually(&mut b, "/products/2", |s| s.contains("hit")).await;
    let calls_before = calls.load(Ordering::SeqCst);
    handle_b.purge_group("products");
    eventually(&mut a, "/products/2", |s| !s.contains("hit")).await;
    assert!(calls.load(Ordering::SeqCst) > calls_before);
}

/// The fill leases under `prefix` and their time to live (ms), once there
/// are any (at most 5 s).
async fn until_leased(prefix: &str) -> Vec<(String, i64)> {
    let keys = keys_eventually(&format!("{prefix}:*:l:*")).await;
    let mut conn = shared_redis();
    keys.into_iter()
        .map(|key| {
            let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
            (key, ttl)
        })
        .collect()
}

// A fill slower than the lease's 1 s keeps its lease (renewed while the
// handler runs): the other replica waits for it and reads its entry, the
// handler runs once. Without renewal B would take the expired lease over
// at 1 s and run the handler too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_fill_keeps_its_lease_alive() {
    shared_redis();
    let prefix = unique_prefix("rc-renew");
    let calls = Arc::new(AtomicUsize::new(0));
    let (mut a, _) = replica(SHARED, &prefix, &calls, Duration::from_millis(2500));
    let (mut b, _) = replica(SHARED, &prefix, &calls, Duration::from_millis(2500));
    let first = tokio::spawn(async move { send(&mut a, "GET", "/products/slow").await });
    let held = until_leased(&prefix).await;
    assert!(
        held.iter().all(|(_, ttl)| (1..=1000).contains(ttl)),
        "a lease lives 1 s, not lock_timeout: {held:?}"
    );
    let (status, cache_status, body) = send(&mut b, "GET", "/products/slow").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "/products/slow"));
    assert!(
        cache_status.contains("hit"),
        "B waited for A's fill: {cache_status}"
    );
    first.await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one fill for both");
}

// A replica that dies mid-fill leaves a lease nobody renews or releases:
// it runs out within its 1 s and the next replica takes it over and
// fills, instead of every reader of the key waiting out `lock_timeout`
// (5 s). The dead replica's lease is planted as its lookup would have
// taken it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_of_a_dead_replica_is_taken_over_when_it_runs_out() {
    shared_redis();
    let prefix = unique_prefix("rc-dead");
    let calls = Arc::new(AtomicUsize::new(0));
    let (mut a, _) = replica(SHARED, &prefix, &calls, Duration::ZERO);
    // Learn the key's lease name from a fill (stored in Redis in the
    // background: wait for it, at most 5 s), then empty the tier again.
    send(&mut a, "GET", "/products/dead").await;
    let entries = keys_eventually(&format!("{prefix}:*:e:*")).await;
    let mut conn = shared_redis();
    let entry = entries.first().expect("an entry in Redis").clone();
    let _: i64 = redis::cmd("DEL").arg(&entry).query(&mut conn).unwrap();
    let lease = entry.replacen(":e:", ":l:", 1);
    let _: () = redis::cmd("SET")
        .arg(&lease)
        .arg("12345")
        .arg("PX")
        .arg(800)
        .query(&mut conn)
        .unwrap();
    // A fresh replica (nothing in its memory) finds the dead one's lease,
    // waits, then fills itself once the lease runs out: well before its
    // own `lock_timeout` (a minute here), so the 20 s bound tells the two
    // apart.
    let (mut b, _) = replica_waiting(
        SHARED,
        &prefix,
        &calls,
        Duration::ZERO,
        Duration::from_secs(60),
    );
    let (status, cache_status, _) = tokio::time::timeout(
        Duration::from_secs(20),
        send(&mut b, "GET", "/products/dead"),
    )
    .await
    .expect("B takes the dead replica's lease over when it runs out");
    assert_eq!(status, StatusCode::OK);
    assert!(!cache_status.contains("hit"), "{cache_status}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "B filled the key");
}

// Redis unreachable: the cache is bypassed (`fwd=bypass`, nothing stored)
// and the handler answers, never an error; counted. When Redis answers
// again, the cache is used again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_bypasses_the_cache() {
    let mut redis = OwnRedis::on_free_port();
    redis.start();
    let calls = Arc::new(AtomicUsize::new(0));
    let (mut svc, handle) = replica(&redis.url(), "rc-down", &calls, Duration::ZERO);
    let (_, first, _) = send(&mut svc, "GET", "/a").await;
    assert!(first.contains("fwd=uri-miss"), "{first}");
    redis.stop();
    for i in 0..3 {
        let (status, cache_status, body) = send(&mut svc, "GET", &format!("/down/{i}")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("/down/{i}"));
        assert!(cache_status.contains("fwd=bypass"), "{cache_status}");
        assert!(!cache_status.contains("stored"), "{cache_status}");
    }
    // Nothing was stored while Redis was down.
    let (_, again, _) = send(&mut svc, "GET", "/down/0").await;
    assert!(again.contains("fwd=bypass"), "{again}");
    assert!(handle.stats().redis_bypassed >= 4);
    redis.start();
    let stored = eventually(&mut svc, "/back", |s| s.contains("uri-miss")).await;
    assert!(stored.contains("stored"), "{stored}");
}

// A fill that stores nothing (a 404 is not stored without a lifetime; a
// request with `Authorization` outside any per-principal rule, RFC 9111
// §3.5) releases its Redis fill lease: another replica does not wait
// `lock_timeout` for an entry that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_that_stores_nothing_releases_its_lease() {
    shared_redis();
    let prefix = unique_prefix("rc-release");
    let calls = Arc::new(AtomicUsize::new(0));
    let (svc, _) = replica(SHARED, &prefix, &calls, Duration::ZERO);
    let request = Request::get("/products/7")
        .header("authorization", "Bearer x")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = svc.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cache_status = response.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(!cache_status.contains("stored"), "{cache_status}");
    assert!(!lease_left(&prefix).await, "the lease is released");
}
