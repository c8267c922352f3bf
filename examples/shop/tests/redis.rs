//! With `REDIS_URL`, no state that matters lives in one replica's memory:
//! two shops on one database and one Redis (the shared server on
//! 127.0.0.1:6379, a key prefix of this run's own) replay each other's
//! idempotent orders, and an update on one purges the other's cached
//! product (response cache and cache-aside, RFC 9875 over Redis pub/sub).

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shop::config::ShopConfig;
use support::{Shop, TestDb, config, seed, token};

const REDIS: &str = "redis://127.0.0.1:6379";

fn with_redis(mut config: ShopConfig, prefix: &str) -> ShopConfig {
    if std::net::TcpStream::connect_timeout(
        &"127.0.0.1:6379".parse().unwrap(),
        Duration::from_secs(2),
    )
    .is_err()
    {
        panic!(
            "this test needs Redis on 127.0.0.1:6379: `apt-get install redis-server` \
             (and start it)"
        );
    }
    config.edge.redis_backend =
        Some(tower_edge::redis::RedisBackend::new(REDIS).expect("a Redis URL"));
    config.redis_prefix = prefix.to_owned();
    config.use_redis_prefix().expect("a valid prefix");
    config
}

async fn product(shop: &Shop, path: &str) -> (String, Value) {
    let response = shop.get(path).await;
    assert_eq!(response.status(), StatusCode::OK);
    let status = response.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned();
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_idempotency_and_purges_through_redis() {
    let db = TestDb::create().await;
    let prefix = format!("shop-test:{}", uuid::Uuid::new_v4().simple());
    let a = Shop::start(with_redis(config(&db.url), &prefix)).await;
    let b = Shop::start_on(with_redis(config(&db.url), &prefix), a.db.clone()).await;
    seed(&a.db, 2).await;

    // Readiness checks Redis too.
    let ready: Value = a.admin_get("/readyz").await.json().await.unwrap();
    assert_eq!(ready["checks"]["redis"], "ok", "{ready}");

    // One order, retried on the other replica: replayed, placed once.
    let alice = token("alice", "orders:write products:write");
    let order = |shop: &Shop| {
        shop.http
            .post(shop.url("/orders"))
            .bearer_auth(&alice)
            .header("idempotency-key", "\"across-replicas\"")
            .json(&json!({"product_id": 1, "quantity": 1, "client_ref": "across"}))
            .send()
    };
    let first = order(&a).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    let retry = order(&b).await.unwrap();
    assert_eq!(retry.status(), StatusCode::CREATED);
    assert!(retry.headers().contains_key("idempotent-replayed"));
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(first["id"], retry["id"]);
    let orders: i64 = db
        .client()
        .await
        .query_one(
            "SELECT count(*) FROM orders WHERE client_ref = 'across'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 1);

    // B caches product 2 (response cache and cache-aside); A updates it;
    // B's next reads, under either URI, see the update.
    let (_, before) = product(&b, "/products/2").await;
    // A hit from memory or, once B's purge subscription has cleared its
    // memory tier at start, from Redis (stored in the background).
    let mut hit = String::new();
    for _ in 0..100 {
        (hit, _) = product(&b, "/products/2").await;
        if hit.contains("hit") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(hit.contains("hit"), "{hit}");
    let (_, _) = product(&b, "/products/2?aside").await;
    let response = a
        .http
        .put(a.url("/products/2"))
        .bearer_auth(&alice)
        .header("if-match", format!("\"{}\"", before["version"]))
        .json(&json!({"price_cents": 777}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // The purge reaches B through Redis pub/sub, a moment later.
    let mut seen = Vec::new();
    for _ in 0..100 {
        let (_, now) = product(&b, "/products/2").await;
        let (_, aside) = product(&b, "/products/2?aside").await;
        seen = vec![now["price_cents"].clone(), aside["price_cents"].clone()];
        if seen == [json!(777), json!(777)] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, [json!(777), json!(777)]);
    a.stop().await;
    b.stop().await;
}

// Redis unreachable: the shop stays ready (`degraded`: every replica
// shares Redis, so failing readiness would empty the load balancer), reads
// are served (rate limits in memory, the response cache bypassed), and an
// order is refused with 503 and `Retry-After` rather than placed without
// its idempotency key (a retry meanwhile would place it twice). Nothing
// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_orders_fail_closed_reads_served_readiness_degraded() {
    let db = TestDb::create().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port(); // free once the listener drops: nothing answers there
    let mut config = config(&db.url);
    config.edge.redis_backend = Some(
        tower_edge::redis::RedisBackend::builder(format!("redis://127.0.0.1:{port}"))
            .timeout(Duration::from_millis(200))
            .build()
            .expect("a Redis URL"),
    );
    config.redis_prefix = "shop-test-down".to_owned();
    config.use_redis_prefix().expect("a valid prefix");
    let shop = Shop::start(config).await;
    seed(&shop.db, 1).await;

    let ready = shop.admin_get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "degraded", "{ready}");
    assert_ne!(ready["checks"]["redis"], "ok", "{ready}");

    let read = shop.get("/products/1").await;
    assert_eq!(read.status(), StatusCode::OK);

    let alice = token("alice", "orders:write");
    let order = shop
        .http
        .post(shop.url("/orders"))
        .bearer_auth(&alice)
        .header("idempotency-key", "\"redis-down\"")
        .json(&json!({"product_id": 1, "quantity": 1, "client_ref": "down"}))
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(order.headers().contains_key("retry-after"));
    let placed = db
        .client()
        .await
        .query_one("SELECT count(*) FROM orders", &[])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(placed, 0, "no order placed without its key");
}
