//! A database error that is not the client's: 500 problem+json with no
//! detail of the error, and a log line carrying the request's correlation
//! ID (the one echoed in `x-request-id`).

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use support::{Shop, TestDb, config, problem, token};

/// Log lines, kept for the test to read.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_error_is_a_500_logged_with_the_correlation_id() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .json()
        .with_current_span(true)
        .init();

    let db = TestDb::create().await;
    let shop = Shop::start(config(&db.url)).await;
    // The table goes away behind the shop's back: the query fails.
    db.client()
        .await
        .batch_execute("DROP TABLE orders")
        .await
        .unwrap();
    let response = shop
        .http
        .get(shop.url("/orders/1"))
        .bearer_auth(token("alice", "orders:read"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    let body = problem(response).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        !detail.contains("orders"),
        "the error is not shown: {detail}"
    );

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("database error: 500"))
        .unwrap_or_else(|| panic!("no error line in {logs}"));
    assert!(line.contains("trace-me-42"), "{line}");
    assert!(line.contains("\"level\":\"ERROR\""), "{line}");
    shop.stop().await;
}
