//! Cache-aside on the response cache's Redis tier against a real Redis
//! (features `response-cache` and `redis`): one load per key across
//! replicas (opt-in), values and `None`s read back by another replica,
//! invalidation by key and group seen by every replica, and Redis down.
//!
//! Needs a Redis on 127.0.0.1:6379 (`.ci/run` starts one) and
//! `redis-server` on the PATH for the outage test. Each test uses its own
//! key prefix.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tower_edge::redis::RedisBackend;
use tower_edge::response_cache::{CacheAside, ResponseCacheHandle, ResponseCacheLayer};

mod support;
use support::redis::{OwnRedis, SHARED, lease_left, shared_redis, unique_prefix};

const TTL: Duration = Duration::from_secs(60);

/// One replica's cache-aside handle: its own layer (its own memory tier)
/// on the Redis at `url` under `prefix`.
fn replica(url: &str, prefix: &str) -> (CacheAside, ResponseCacheHandle) {
    let backend = RedisBackend::builder(url)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let layer = ResponseCacheLayer::builder()
        .redis(backend)
        .redis_key_prefix(prefix)
        .build()
        .unwrap();
    (layer.cache_aside(), layer.handle())
}

/// A load that counts its runs and takes `delay`, like a database query.
async fn load(loads: &AtomicUsize, delay: Duration, value: u32) -> Result<u32, std::io::Error> {
    loads.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(delay).await;
    Ok(value)
}

// 100 concurrent cold reads of one key spread over two replicas load it
// once: one replica gets the Redis tier's fill lease, the other waits for
// the value it keeps there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn across_replicas_one_load_for_two_replicas() {
    shared_redis();
    let prefix = unique_prefix("aside-fill");
    let (a, _) = replica(SHARED, &prefix);
    let (b, _) = replica(SHARED, &prefix);
    let (a, b) = (a.across_replicas(), b.across_replicas());
    let loads = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
            let loads = Arc::clone(&loads);
            tokio::spawn(async move {
                cache
                    .get_or_load("product:1", TTL, || {
                        load(&loads, Duration::from_millis(300), 7)
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), 7);
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "one load for both replicas"
    );
}

// Without `across_replicas` each replica loads for itself (the values
// stay in the process): the control of the test above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_local_by_default_each_replica_loads() {
    shared_redis();
    let prefix = unique_prefix("aside-local");
    let (a, _) = replica(SHARED, &prefix);
    let (b, _) = replica(SHARED, &prefix);
    let loads = AtomicUsize::new(0);
    settle(&a, "product:1", &loads).await; // kept by A
    let before = loads.load(Ordering::SeqCst);
    let got = b
        .get_or_load("product:1", TTL, || load(&loads, Duration::ZERO, 7))
        .await
        .unwrap();
    assert_eq!(got, 7, "B loaded its own value");
    assert_eq!(
        loads.load(Ordering::SeqCst),
        before + 1,
        "B loads for itself"
    );
}

// A `None` kept by one replica (negative caching) is read by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_none_is_shared_too() {
    shared_redis();
    let prefix = unique_prefix("aside-none");
    let (a, _) = replica(SHARED, &prefix);
    let (b, _) = replica(SHARED, &prefix);
    let (a, b) = (a.across_replicas(), b.across_replicas());
    let loads = AtomicUsize::new(0);
    let missing = || async {
        loads.fetch_add(1, Ordering::SeqCst);
        Ok::<Option<u32>, std::io::Error>(None)
    };
    let first = a
        .get_or_load_optional("product:404", TTL, TTL, missing)
        .await
        .unwrap();
    let second = b
        .get_or_load_optional("product:404", TTL, TTL, missing)
        .await
        .unwrap();
    assert_eq!((first, second), (None, None));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
}

/// Reads `key` on `cache` until its value is kept (the replica's purge
/// subscription, opened by its first load, clears its memory tier once
/// when it starts), at most 5 s; the loads it took.
async fn settle(cache: &CacheAside, key: &str, loads: &AtomicUsize) {
    let mut quiet = 0;
    for _ in 0..100 {
        let before = loads.load(Ordering::SeqCst);
        cache
            .get_or_load(key, TTL, || load(loads, Duration::ZERO, 1))
            .await
            .unwrap();
        quiet = if loads.load(Ordering::SeqCst) == before {
            quiet + 1
        } else {
            0
        };
        if quiet == 3 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{key} is never kept");
}

/// Reads `key` on `cache` until it loads again, at most 5 s.
async fn reloads(cache: &CacheAside, key: &str, loads: &AtomicUsize) {
    let before = loads.load(Ordering::SeqCst);
    for _ in 0..100 {
        cache
            .get_or_load(key, TTL, || load(loads, Duration::ZERO, 2))
            .await
            .unwrap();
        if loads.load(Ordering::SeqCst) > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{key} was never invalidated on this replica");
}

// Invalidation by key on one replica reaches a value another replica
// keeps in its own memory (published through Redis); the value lives 60 s
// otherwise, so without the message the test fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_by_key_reaches_every_replica() {
    shared_redis();
    let prefix = unique_prefix("aside-inval");
    let (a, _) = replica(SHARED, &prefix);
    let (b, _) = replica(SHARED, &prefix);
    let loads = AtomicUsize::new(0);
    settle(&b, "product:1", &loads).await;
    settle(&a, "product:1", &loads).await;
    assert!(a.invalidate("product:1"), "A kept it");
    reloads(&b, "product:1", &loads).await;
}

// The same for a group, with values kept in Redis (`across_replicas`):
// the purge deletes them there too, so the next read loads again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalidate_group_reaches_every_replica_and_redis() {
    shared_redis();
    let prefix = unique_prefix("aside-group");
    let (a, _) = replica(SHARED, &prefix);
    let (b, _) = replica(SHARED, &prefix);
    let (a, b) = (a.across_replicas(), b.across_replicas());
    let loads = AtomicUsize::new(0);
    let read = |cache: CacheAside| {
        let loads = &loads;
        async move {
            cache
                .get_or_load_in("product:1", TTL, &["products"], || {
                    load(loads, Duration::ZERO, 1)
                })
                .await
                .unwrap()
        }
    };
    read(a.clone()).await;
    read(b.clone()).await;
    assert_eq!(loads.load(Ordering::SeqCst), 1, "B read A's value");
    tokio::time::sleep(Duration::from_millis(300)).await; // both subscribed
    read(b.clone()).await; // kept in B's memory again after its subscription began
    a.invalidate_group("products");
    let before = loads.load(Ordering::SeqCst);
    for _ in 0..100 {
        read(b.clone()).await;
        if loads.load(Ordering::SeqCst) > before {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the group purge never reached B");
}

// Redis unreachable: the value is loaded and kept in the process (never
// an error), counted as a bypass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_loads_in_the_process() {
    let mut redis = OwnRedis::on_free_port();
    redis.start();
    let (cache, handle) = replica(&redis.url(), "aside-down");
    let cache = cache.across_replicas();
    redis.stop();
    let loads = AtomicUsize::new(0);
    for _ in 0..2 {
        let got = cache
            .get_or_load("product:1", TTL, || load(&loads, Duration::ZERO, 3))
            .await
            .unwrap();
        assert_eq!(got, 3);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1, "kept in the process");
    assert!(handle.stats().redis_bypassed >= 1);
}

// A failed load keeps nothing and releases the Redis fill lease, so the
// next reader (here or on another replica) loads at once rather than
// waiting `lock_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_load_releases_the_lease() {
    shared_redis();
    let prefix = unique_prefix("aside-fail");
    let (a, _) = replica(SHARED, &prefix);
    let a = a.across_replicas();
    let failed = a
        .get_or_load("product:1", TTL, || async {
            Err::<u32, _>(std::io::Error::other("database down"))
        })
        .await;
    assert!(failed.is_err());
    assert!(!lease_left(&prefix).await, "the lease is released");
}
