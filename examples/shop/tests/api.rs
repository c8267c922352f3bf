//! Every route against a real Postgres, each test in a database of its
//! own: migrations, pagination, problem+json for bad input, If-Match
//! (RFC 9110 §13.1.1) and orders placed once per Idempotency-Key.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Shop, TestDb, config, problem, seed, token};

const WRITER: &str = "products:write orders:write orders:read";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_create_the_tables_and_indexes_once() {
    let db = TestDb::create().await;
    let shop = Shop::start(config(&db.url)).await;
    let client = db.client().await;
    let versions: Vec<i32> = client
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, [1, 2]);
    let indexes: Vec<String> = client
        .query(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for wanted in [
        "orders_client_ref_idx",
        "orders_pkey",
        "orders_product_id_idx",
        "products_name_key",
        "products_pkey",
    ] {
        assert!(
            indexes.iter().any(|i| i == wanted),
            "{wanted} in {indexes:?}"
        );
    }
    // A second run (another replica starting) applies nothing.
    let again = shop::db::migrate::run(shop.db.primary()).await.unwrap();
    assert!(again.is_empty(), "{again:?}");
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyset_pagination_walks_every_product_once() {
    let db = TestDb::create().await;
    let shop = Shop::start(config(&db.url)).await;
    seed(&shop.db, 45).await;
    let mut seen = Vec::new();
    let mut after = 0;
    let mut sizes = Vec::new();
    for _ in 0..10 {
        let page: Value = shop
            .get_json(&format!("/products?limit=20&after={after}"))
            .await;
        let items = page["items"].as_array().unwrap();
        sizes.push(items.len());
        seen.extend(items.iter().map(|p| p["id"].as_i64().unwrap()));
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(sizes, [20, 20, 5]);
    assert_eq!(seen, (1..=45).collect::<Vec<i64>>());
    // The default page is 20; bad values are problems.
    let page: Value = shop.get_json("/products").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 20);
    assert_eq!(page["next"], 20);
    for (query, status) in [
        ("limit=ten", 400),
        ("limit=0", 422),
        ("limit=101", 422),
        ("after=-2", 422),
    ] {
        let response = shop.get(&format!("/products?{query}")).await;
        assert_eq!(response.status().as_u16(), status, "{query}");
        assert_eq!(problem(response).await["status"], status);
    }
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_and_its_bad_input() {
    let db = TestDb::create().await;
    let shop = Shop::start(config(&db.url)).await;
    seed(&shop.db, 3).await;
    let alice = token("alice", WRITER);
    let bob = token("bob", WRITER);
    let reader = token("carol", "orders:write");

    // GET /products/{id}: the row, with its version as a strong ETag.
    let response = shop.get("/products/2").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let product: Value = response.json().await.unwrap();
    assert_eq!(product["name"], "product-000002");
    for (path, status) in [
        ("/products/999", 404),
        ("/products/abc", 404),
        ("/nowhere", 404),
    ] {
        let response = shop.get(path).await;
        assert_eq!(response.status().as_u16(), status, "{path}");
        problem(response).await;
    }

    // PUT /products/{id}: a token with the scope, If-Match required.
    let put = |tok: Option<&str>, if_match: Option<&str>, body: &str| {
        let mut request = shop
            .http
            .put(shop.url("/products/2"))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(tok) = tok {
            request = request.bearer_auth(tok);
        }
        if let Some(tag) = if_match {
            request = request.header("if-match", tag);
        }
        request.send()
    };
    assert_eq!(
        put(None, Some("\"1\""), r#"{"stock": 1}"#)
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        put(Some(&reader), Some("\"1\""), r#"{"stock": 1}"#)
            .await
            .unwrap()
            .status(),
        403
    );
    let response = put(Some(&alice), None, r#"{"stock": 1}"#).await.unwrap();
    assert_eq!(response.status(), StatusCode::PRECONDITION_REQUIRED); // RFC 6585 §3
    problem(response).await;
    for (body, status) in [
        ("{not json", 400),
        (r#"{"stock": "many"}"#, 400),
        (r#"{"colour": "red"}"#, 400),
        ("{}", 422),
        (r#"{"price_cents": -1}"#, 422),
        (r#"{"name": ""}"#, 422),
    ] {
        let response = put(Some(&alice), Some("\"1\""), body).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{body}");
        problem(response).await;
    }
    // Over 64 KiB: 413 (RFC 9110 §15.5.14), as a problem.
    let huge = format!(r#"{{"name": "{}"}}"#, "x".repeat(70 * 1024));
    let response = put(Some(&alice), Some("\"1\""), &huge).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    problem(response).await;
    // A name another product has: a conflict with the current state.
    let response = put(Some(&alice), Some("\"1\""), r#"{"name": "product-000001"}"#)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    problem(response).await;
    let response = put(
        Some(&alice),
        Some("\"1\""),
        r#"{"price_cents": 999, "stock": 5}"#,
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["etag"], "\"2\"");
    let updated: Value = response.json().await.unwrap();
    assert_eq!(
        (updated["price_cents"].as_i64(), updated["stock"].as_i64()),
        (Some(999), Some(5))
    );

    // POST /orders: scope, key, body; 404 / 409 / 422 as the contract says.
    let order = |tok: &str, key: &str, body: Value| {
        shop.http
            .post(shop.url("/orders"))
            .bearer_auth(tok)
            .header("idempotency-key", format!("\"{key}\""))
            .json(&body)
            .send()
    };
    let response = shop
        .http
        .post(shop.url("/orders"))
        .bearer_auth(&alice)
        .json(&json!({"product_id": 2, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::BAD_REQUEST,
        "no Idempotency-Key"
    );
    for (key, body, status) in [
        ("k-404", json!({"product_id": 99, "quantity": 1}), 404),
        ("k-409", json!({"product_id": 2, "quantity": 6}), 409),
        ("k-422a", json!({"product_id": 2, "quantity": 0}), 422),
        ("k-422b", json!({"product_id": 2, "quantity": 101}), 422),
        (
            "k-422c",
            json!({"product_id": 2, "quantity": 1, "client_ref": "x".repeat(65)}),
            422,
        ),
        ("k-400", json!({"product_id": "two", "quantity": 1}), 400),
    ] {
        let response = order(&alice, key, body).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{key}");
        problem(response).await;
    }
    let response = order(
        &alice,
        "k-ok",
        json!({"product_id": 2, "quantity": 5, "client_ref": "ref-1"}),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let placed: Value = response.json().await.unwrap();
    assert_eq!(location, format!("/orders/{}", placed["id"]));
    assert_eq!(placed["subject"], "alice");
    assert_eq!(placed["quantity"], 5);
    assert_eq!(placed["client_ref"], "ref-1");
    // The stock was taken in the same transaction: none left now.
    let product: Value = shop.get_json("/products/2").await;
    assert_eq!(product["stock"], 0);

    // GET /orders/{id}: only its subject sees it.
    let response = shop
        .http
        .get(shop.url(&location))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), placed);
    let response = shop
        .http
        .get(shop.url(&location))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    problem(response).await;
    let response = shop
        .http
        .get(shop.url(&location))
        .bearer_auth(&reader)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        StatusCode::FORBIDDEN,
        "orders:read needed"
    );
    let response = shop.get(&location).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    shop.stop().await;
}

/// RFC 9110 §13.1.1: two writers holding the same tag; only the first
/// write happens, the second gets 412 and the first's value stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_match_prevents_lost_updates() {
    let db = TestDb::create().await;
    let shop = Shop::start(config(&db.url)).await;
    seed(&shop.db, 1).await;
    let alice = token("alice", WRITER);
    let tag = shop.get("/products/1").await.headers()["etag"]
        .to_str()
        .unwrap()
        .to_owned();
    // Ten writers at once, each with the tag they read.
    let writes = (0..10).map(|i| {
        shop.http
            .put(shop.url("/products/1"))
            .bearer_auth(&alice)
            .header("if-match", tag.as_str())
            .json(&json!({ "price_cents": 1000 + i }))
            .send()
    });
    let responses = futures_join_all(writes).await;
    let mut winners = Vec::new();
    for (i, response) in responses.into_iter().enumerate() {
        let response = response.unwrap();
        match response.status().as_u16() {
            200 => winners.push(1000 + i as i64),
            412 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one write wins");
    let product: Value = shop.get_json("/products/1?fresh").await;
    assert_eq!(product["price_cents"].as_i64(), Some(winners[0]));
    assert_eq!(product["version"], 2);
    // The stale tag again: 412; `*` (any current representation) passes.
    let stale = shop
        .http
        .put(shop.url("/products/1"))
        .bearer_auth(&alice)
        .header("if-match", tag.as_str())
        .json(&json!({"stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let any = shop
        .http
        .put(shop.url("/products/1"))
        .bearer_auth(&alice)
        .header("if-match", "*")
        .json(&json!({"stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(any.status(), StatusCode::OK);
    shop.stop().await;
}

/// draft-ietf-httpapi-idempotency-key-header-07 §2: 50 concurrent retries
/// of one request with one key place one order; every 201 is that order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_is_placed_once_under_50_concurrent_retries() {
    let db = TestDb::create().await;
    let shop = Shop::start(config(&db.url)).await;
    seed(&shop.db, 1).await;
    let alice = token("alice", WRITER);
    let body = json!({"product_id": 1, "quantity": 3, "client_ref": "retried"});
    let retries = (0..50).map(|_| {
        shop.http
            .post(shop.url("/orders"))
            .bearer_auth(&alice)
            .header("idempotency-key", "\"one-key\"")
            .json(&body)
            .send()
    });
    let responses = futures_join_all(retries).await;
    let mut ids = Vec::new();
    let mut in_progress = 0;
    for response in responses {
        let response = response.unwrap();
        match response.status().as_u16() {
            201 => ids.push(response.json::<Value>().await.unwrap()["id"].clone()),
            // The first still running: 409 with Retry-After (§2.7).
            409 => {
                assert!(response.headers().contains_key("retry-after"));
                in_progress += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(!ids.is_empty());
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(ids.len() + in_progress, 50);
    let client = db.client().await;
    let orders: i64 = client
        .query_one(
            "SELECT count(*) FROM orders WHERE client_ref = 'retried'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(orders, 1);
    let stock: i32 = client
        .query_one("SELECT stock FROM products WHERE id = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(stock, 1_000_000 - 3);
    shop.stop().await;
}

/// Runs every future on its own task at once; their outputs in order.
async fn futures_join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
