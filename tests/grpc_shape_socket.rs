//! Which clients get gRPC-shaped rejections, over a real socket with real
//! HTTP/1.1, HTTP/2 and tonic clients.
//!
//! Security review finding: any HTTP/1.1 client could turn a rejection into
//! `200 OK` by sending `Content-Type: application/grpcfoo` (or
//! `APPLICATION/GRPC`), which forward-auth proxies (nginx `auth_request`,
//! Traefik ForwardAuth, Envoy `ext_authz`) read as "allowed" and a CDN may
//! store. gRPC needs HTTP/2 (gRPC over HTTP/2 protocol spec); gRPC-Web
//! (PROTOCOL-WEB.md) runs over any version; everything else gets the HTTP
//! answer, and every rejection carries `Cache-Control: no-store`
//! (RFC 9111 §5.2.2.5).

use std::net::SocketAddr;

use axum::routing::get;
use bytes::Bytes;
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer, VerificationKey};

const SECRET: &[u8] = b"grpc-shape-test-secret-32-bytes!";

/// `/me` (HTTP) and the gRPC health service behind JWT auth, served for
/// HTTP/1.1 and HTTP/2 (prior knowledge) on one port.
async fn serve() -> SocketAddr {
    let auth = JwtAuthLayer::builder()
        .key(VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .realm("shape")
        .build()
        .unwrap();
    let (_reporter, health) = tonic_health::server::health_reporter();
    let app = tonic::service::Routes::new(health)
        .into_axum_router()
        .route("/me", get(|| async { "me" }).put(|| async { "stored" }))
        .layer(auth);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let service = TowerToHyperService::new(app.clone());
            tokio::spawn(async move {
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
}

async fn send(addr: SocketAddr, version: Version, method: &str, content_type: &str) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{addr}/me"))
        .header("authorization", "Bearer not.a.token")
        .header("content-type", content_type)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = if version == Version::HTTP_2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        sender.send_request(request).await.unwrap()
    };
    assert_eq!(response.version(), version);
    let (parts, body) = response.into_parts();
    let _ = body.collect().await;
    Answer {
        status: parts.status,
        headers: parts.headers,
    }
}

#[tokio::test]
async fn http1_lookalikes_get_the_http_answer() {
    let addr = serve().await;
    for method in ["GET", "PUT"] {
        for content_type in [
            "application/grpcfoo",
            "APPLICATION/GRPC",
            "application/grpc",
            "application/grpc+proto",
        ] {
            let answer = send(addr, Version::HTTP_11, method, content_type).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {content_type}"
            );
            assert!(answer.headers.get("grpc-status").is_none());
            assert_eq!(answer.headers["content-type"], "application/problem+json");
            assert_eq!(answer.headers["cache-control"], "no-store");
            assert!(answer.headers.contains_key("www-authenticate"));
        }
    }
}

#[tokio::test]
async fn http2_lookalikes_get_the_http_answer() {
    let addr = serve().await;
    for content_type in [
        "application/grpcfoo",
        "application/grpc+",
        "application/json",
    ] {
        let answer = send(addr, Version::HTTP_2, "GET", content_type).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{content_type}");
        assert!(answer.headers.get("grpc-status").is_none());
        assert_eq!(answer.headers["cache-control"], "no-store");
    }
}

#[tokio::test]
async fn real_grpc_and_grpc_web_get_trailers_only_no_store() {
    let addr = serve().await;
    let cases = [
        (Version::HTTP_2, "application/grpc"),
        (Version::HTTP_2, "APPLICATION/GRPC+proto"),
        (Version::HTTP_2, "application/grpc-web"),
        (Version::HTTP_11, "application/grpc-web"),
        (Version::HTTP_11, "application/grpc-web+proto"),
        (Version::HTTP_11, "application/grpc-web-text"),
    ];
    for (version, content_type) in cases {
        let answer = send(addr, version, "POST", content_type).await;
        assert_eq!(answer.status, StatusCode::OK, "{version:?} {content_type}");
        assert_eq!(
            answer.headers["grpc-status"], "16",
            "{version:?} {content_type}"
        );
        assert_eq!(answer.headers["content-type"], content_type);
        assert_eq!(answer.headers["cache-control"], "no-store");
    }
}

#[tokio::test]
async fn tonic_client_gets_unauthenticated_with_no_store() {
    let addr = serve().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = client
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    // A trailers-only answer: its headers are the status' metadata.
    assert_eq!(status.metadata().get("cache-control").unwrap(), "no-store");
}
