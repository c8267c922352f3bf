//! Overload protection over real sockets: idle keep-alive connections hold
//! no permit, and the layer fits tonic's router (error type `Infallible`).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_edge::overload::OverloadLayer;

async fn serve(layer: OverloadLayer) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new()
        .route("/", axum::routing::get(|| async { "ok" }))
        .layer(layer);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    addr
}

/// Sends `GET /` on `stream` (keep-alive) and reads the whole response.
async fn get_on(stream: &mut TcpStream) -> String {
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(support::socket::PROMPTLY, async {
        // The 200's body is `ok`, a 503's a problem document ending in `}`.
        while !(response.ends_with(b"\r\n\r\nok") || response.ends_with(b"}")) {
            let n = stream.read(&mut buf).await.unwrap();
            assert_ne!(n, 0, "closed: {response:?}");
            response.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("a response in time");
    String::from_utf8_lossy(&response).into_owned()
}

// tower #793 / vector #26457: with the permit taken in `poll_ready`, every
// idle keep-alive connection holds one. Here 1 000 connections that each
// made a request and stay open, plus 1 000 that never sent anything, hold
// none: a limit of 1 still admits the next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_keep_alive_connections_hold_no_permit() {
    let layer = OverloadLayer::new(1);
    let addr = serve(layer.clone()).await;
    let mut idle = Vec::new();
    for _ in 0..1000 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let response = get_on(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        idle.push(stream);
    }
    for _ in 0..1000 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    assert_eq!(layer.stats().in_flight, 0);
    assert_eq!(layer.stats().shed_overloaded, 0);
    // Reused and fresh connections alike are admitted.
    let response = get_on(&mut idle[500]).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    let response = get_on(&mut fresh).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(layer.stats().in_flight, 0);
}

// tonic's router takes only services whose error is `Infallible`
// (`Server::add_service`); tower's `LoadShed` (`BoxError`) does not fit.
// The layer keeps the inner error type, so it wraps a tonic service
// directly; an overloaded call gets UNAVAILABLE (14), and a server stream
// holds its permit while it streams.
#[tokio::test]
async fn the_layer_fits_tonic_and_answers_unavailable() {
    let layer = OverloadLayer::builder()
        .max_in_flight(1)
        .exempt_paths(Vec::<String>::new())
        .build()
        .unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let service = tonic::service::LayerExt::named_layer(&layer, health);
    fn infallible<S: tower::Service<R, Error = std::convert::Infallible>, R>(_: &S) {}
    infallible::<_, http::Request<tonic::body::Body>>(&service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let request = || tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    };
    client.check(request()).await.expect("admitted");
    // A Watch stream holds the one slot while it is open.
    let mut watch = client.watch(request()).await.unwrap().into_inner();
    watch.message().await.unwrap().expect("the first status");
    assert_eq!(layer.stats().in_flight, 1);
    let status = client.check(request()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    drop(watch);
    // The server sees the stream reset and drops its body: the slot is back.
    let mut admitted = false;
    for _ in 0..100 {
        if client.check(request()).await.is_ok() {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(admitted, "the slot came back after the stream ended");
}
