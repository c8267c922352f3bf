//! `DATABASE_READ_URL`: the GETs read from the replica, writes go to the
//! primary, and reads fall back to the primary when the replica gives no
//! connection. The "replica" here is a second database whose rows differ,
//! so where each answer came from shows.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shop::db::{Db, migrate};
use support::{Shop, TestDb, config, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_read_the_replica_and_fall_back_to_the_primary() {
    let primary = TestDb::create().await;
    let replica = TestDb::create().await;
    let mut settings = config(&primary.url);
    settings.database_read_url = Some(replica.url.clone());
    shop::telemetry::install_metrics();
    let db = Db::new(&settings).unwrap();
    migrate::run(db.primary()).await.unwrap();
    migrate::run(db.replica().unwrap()).await.unwrap();
    migrate::seed(db.primary(), 1).await.unwrap();
    replica
        .client()
        .await
        .batch_execute(
            "INSERT INTO products (name, price_cents, stock) VALUES ('on-the-replica', 5, 5)",
        )
        .await
        .unwrap();
    let shop = Shop::start_on(settings, db).await;

    let product: Value = shop.get_json("/products/1").await;
    assert_eq!(product["name"], "on-the-replica", "GET reads the replica");
    let response = shop
        .http
        .put(shop.url("/products/1"))
        .bearer_auth(token("alice", "products:write"))
        .header("if-match", "\"1\"")
        .json(&json!({"stock": 42}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let written: Value = response.json().await.unwrap();
    assert_eq!(written["name"], "product-000001", "PUT writes the primary");
    assert_eq!(written["stock"], 42);
    shop.stop().await;

    // A replica nobody answers on: reads come from the primary.
    let mut settings = config(&primary.url);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    settings.database_read_url = Some(format!(
        "host=127.0.0.1 port={closed} user=postgres dbname=x"
    ));
    settings.pool.acquire_timeout = Duration::from_millis(300);
    let shop = Shop::start(settings).await;
    let response = shop.get("/products?limit=1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["items"][0]["name"], "product-000001");
    // Readiness reports the replica, and stays ready on the primary.
    let ready = shop.admin_get("/readyz").await;
    assert_eq!(ready.status(), StatusCode::OK);
    let ready: Value = ready.json().await.unwrap();
    assert_ne!(ready["checks"]["postgres_replica"], "ok");
    shop.stop().await;
}
