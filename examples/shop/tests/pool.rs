//! The pool exhausted: a query held open takes the only connection; the
//! next request waits the acquire timeout and is answered 503 with
//! `Retry-After` (RFC 9110 §15.6.4, §10.2.3), counted in
//! `db.client.connection.timeouts`, while `/readyz` (its own connection)
//! stays 200.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use support::{Shop, TestDb, config, problem, seed, token};

fn timeouts(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("db_client_connection_timeouts_total{")
                && l.contains("db_client_connection_pool_name=\"primary\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_answers_503_with_retry_after() {
    let db = TestDb::create().await;
    let mut config = config(&db.url);
    config.pool.max_connections = 1;
    config.pool.acquire_timeout = Duration::from_millis(300);
    let shop = Shop::start(config).await;
    seed(&shop.db, 3).await;
    let before = timeouts(&shop.metrics_text().await);

    // The test's own connection locks product 1; a PUT of it then holds
    // the pool's only connection, waiting for the lock.
    let mut holder = db.client().await;
    let lock = holder.transaction().await.unwrap();
    lock.execute("SELECT 1 FROM products WHERE id = 1 FOR UPDATE", &[])
        .await
        .unwrap();
    let put = shop
        .http
        .put(shop.url("/products/1"))
        .bearer_auth(token("alice", "products:write"))
        .header("if-match", "*")
        .json(&json!({"stock": 9}))
        .send();
    let put = tokio::spawn(put);
    let mut held = false;
    for _ in 0..100 {
        if shop.db.primary().connections().1 == 1 {
            held = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(held, "the PUT holds the pool's only connection");

    // A read that misses every cache needs a connection: none comes.
    let response = shop.get("/products/2").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["cache-control"], "no-store");
    problem(response).await;

    // Readiness does not queue behind the saturated pool.
    let ready = shop.admin_get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let metrics = shop.metrics_text().await;
    assert!(timeouts(&metrics) >= before + 1.0, "timeouts counted");
    assert!(metrics.contains("db_client_connection_wait_time_seconds_bucket{"));
    assert!(metrics.contains("db_client_connection_count{db_client_connection_pool_name=\"primary\",db_client_connection_state=\"used\""));
    assert!(
        metrics.contains("db_client_connection_max{db_client_connection_pool_name=\"primary\"")
    );

    // The lock goes; the PUT completes and the pool serves again.
    lock.commit().await.unwrap();
    let put = put.await.unwrap().unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let response = shop.get("/products/2").await;
    assert_eq!(response.status(), StatusCode::OK);
    shop.stop().await;
}

/// `DB_IDLE_TIMEOUT_MS`: a connection left idle that long is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    let db = TestDb::create().await;
    let mut config = config(&db.url);
    config.pool.idle_timeout = Duration::from_millis(300);
    let shop = Shop::start(config).await;
    seed(&shop.db, 1).await;
    let response = shop.get("/products?limit=1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut closed = false;
    for _ in 0..100 {
        if shop.db.primary().connections() == (0, 0) {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "the idle connection was closed");
    // The pool opens a new one when asked.
    let response = shop.get("/products?limit=2").await;
    assert_eq!(response.status(), StatusCode::OK);
    shop.stop().await;
}
