//! The response cache (RFC 9111) and cache-aside inside the handler: both
//! hit, and both purged by an update (RFC 9875 `Cache-Group-Invalidation`).

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Shop, TestDb, config, seed, token};

fn cache_status(response: &reqwest::Response) -> String {
    response.headers()["cache-status"]
        .to_str()
        .unwrap()
        .to_owned()
}

async fn get(shop: &Shop, path: &str) -> (String, Value) {
    let response = shop.get(path).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let status = cache_status(&response);
    (status, response.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_cache_and_cache_aside_hit_and_are_purged_by_an_update() {
    let db = TestDb::create().await;
    let shop = Shop::start(config(&db.url)).await;
    seed(&shop.db, 2).await;
    let client = db.client().await;

    // The response cache: the second read is a hit (RFC 9211 `hit`).
    let (first, product) = get(&shop, "/products/1").await;
    assert!(
        first.contains("fwd=uri-miss") && first.contains("stored"),
        "{first}"
    );
    let (second, _) = get(&shop, "/products/1").await;
    assert!(second.contains("; hit"), "{second}");

    // Cache-aside: change the row behind the shop's back, then ask for
    // the product under another URI (a response-cache miss, so the
    // handler runs): the handler's lookup is answered from cache-aside,
    // not from the database.
    client
        .execute("UPDATE products SET price_cents = 1 WHERE id = 1", &[])
        .await
        .unwrap();
    let (miss, aside) = get(&shop, "/products/1?via=handler").await;
    assert!(miss.contains("fwd=uri-miss"), "{miss}");
    assert_eq!(aside, product, "cache-aside answered, not the database");
    client
        .execute("UPDATE products SET price_cents = 2 WHERE id = 1", &[])
        .await
        .unwrap();

    // An update through the API purges both: the next reads, under either
    // URI, see it.
    let response = shop
        .http
        .put(shop.url("/products/1"))
        .bearer_auth(token("alice", "products:write"))
        .header("if-match", format!("\"{}\"", product["version"]))
        .json(&json!({"price_cents": 4321}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().contains_key("cache-group-invalidation"));
    for path in ["/products/1", "/products/1?via=handler"] {
        let (status, fresh) = get(&shop, path).await;
        assert!(!status.contains("; hit"), "{path}: {status}");
        assert_eq!(fresh["price_cents"], 4321, "{path}");
        assert_eq!(fresh["version"], 2, "{path}");
    }

    // An order changes the stock: it purges the product as well.
    let (_, before) = get(&shop, "/products/2").await;
    let (hit, _) = get(&shop, "/products/2").await;
    assert!(hit.contains("; hit"), "{hit}");
    let response = shop
        .http
        .post(shop.url("/orders"))
        .bearer_auth(token("alice", "orders:write"))
        .header("idempotency-key", "\"cache-order\"")
        .json(&json!({"product_id": 2, "quantity": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let (status, after) = get(&shop, "/products/2").await;
    assert!(!status.contains("; hit"), "{status}");
    assert_eq!(
        after["stock"].as_i64(),
        before["stock"].as_i64().map(|s| s - 4)
    );
    shop.stop().await;
}

/// A conditional read of the cached product: 304 from the cache layers
/// with the version's tag (RFC 9110 §13.1.2), 200 once it changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_none_match_on_the_version_tag() {
    let db = TestDb::create().await;
    let shop = Shop::start(config(&db.url)).await;
    seed(&shop.db, 1).await;
    let response = shop
        .http
        .get(shop.url("/products/1"))
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_MODIFIED);
    let response = shop
        .http
        .get(shop.url("/products/1"))
        .header("if-none-match", "\"0\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"1\"");
    shop.stop().await;
}

/// `SHOP_CACHE=off` (the benchmarks' baseline): no response cache, no
/// cache-aside; every read is the database's current row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_cache_off_every_read_queries_the_database() {
    let db = TestDb::create().await;
    let mut settings = config(&db.url);
    settings.cache = false;
    let shop = Shop::start(settings).await;
    seed(&shop.db, 1).await;
    let client = db.client().await;
    for price in [11, 12] {
        client
            .execute(
                "UPDATE products SET price_cents = $1 WHERE id = 1",
                &[&(price as i64)],
            )
            .await
            .unwrap();
        let response = shop.get("/products/1").await;
        assert!(!response.headers().contains_key("cache-status"));
        let product: Value = response.json().await.unwrap();
        assert_eq!(product["price_cents"], price);
    }
    shop.stop().await;
}
