//! Drives the axum example's router on a real socket so the example cannot rot.

#[allow(dead_code)]
#[path = "../examples/axum.rs"]
mod example;

use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn serve() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            example::app().into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}

async fn get(addr: SocketAddr, path: &str, request_id: Option<&str>) -> http::Response<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    if let Some(id) = request_id {
        req = req.header("x-request-id", id);
    }
    let res = client
        .request(req.body(Empty::new()).unwrap())
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    http::Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
}

#[tokio::test]
async fn health_answers_with_a_request_id() {
    let addr = serve().await;
    let res = get(addr, "/health", None).await;
    assert_eq!(res.status(), 200);
    let id = res.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
}

#[tokio::test]
async fn valid_id_is_echoed_and_invalid_replaced() {
    let addr = serve().await;
    let res = get(addr, "/hello", Some("my-id-123")).await;
    assert_eq!(res.headers()["x-request-id"], "my-id-123");
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body["correlation_id"], "my-id-123");

    let res = get(addr, "/hello", Some("bad id!")).await;
    let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(echoed, "bad id!");
    uuid::Uuid::parse_str(&echoed).unwrap();
}
