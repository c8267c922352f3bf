//! Drives the hyper example over a real socket.

#[allow(dead_code)]
#[path = "../examples/hyper.rs"]
mod example;

use std::net::SocketAddr;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

async fn start() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, std::future::pending()));
    addr
}

async fn get(addr: SocketAddr, path: &str, id: Option<&str>) -> http::Response<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    if let Some(id) = id {
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
async fn hello_echoes_the_correlation_id() {
    let addr = start().await;
    let res = get(addr, "/hello", Some("hyper-1")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-request-id"], "hyper-1");
    let body: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    assert_eq!(body["correlation_id"], "hyper-1");
}

#[tokio::test]
async fn unknown_path_is_404_with_an_id() {
    let addr = start().await;
    let res = get(addr, "/nope", None).await;
    assert_eq!(res.status(), 404);
    assert!(res.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn graceful_shutdown_stops_accepting() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(example::serve(listener, async {
        let _ = rx.await;
    }));
    assert_eq!(get(addr, "/health", None).await.status(), 200);
    tx.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .expect("server stops after shutdown")
        .unwrap();
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
