//! JWT auth over a real socket, stacked with the correlation-ID layer and
//! axum extractors: what a client actually receives on the wire.

use std::net::SocketAddr;

use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceBuilder;
use tower_edge::correlation::CorrelationIdLayer;
use tower_edge::jwt_auth::{Algorithm, Claims, JwtAuthLayer, RequireScopeLayer, VerificationKey};

const SECRET: &[u8] = b"socket-test-secret-of-32-bytes!!";

fn token(claims: serde_json::Value) -> String {
    // jsonwebtoken signs with its process default, which a build with both
    // of its providers (tower-edge's `aws-lc-rs` feature) does not have.
    let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn valid(scope: &str) -> String {
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    token(serde_json::json!({ "sub": "ann", "exp": exp, "scope": scope }))
}

async fn serve() -> SocketAddr {
    let auth = JwtAuthLayer::builder()
        .key(VerificationKey::hmac(Algorithm::HS256, SECRET).unwrap())
        .optional()
        .realm("socket")
        .build()
        .unwrap();
    let admin_only = RequireScopeLayer::builder()
        .scope("admin")
        .realm("socket")
        .build()
        .unwrap();
    let app = axum::Router::new()
        .route(
            "/me",
            get(|claims: Claims| async move { claims.sub.clone().unwrap_or_default() }),
        )
        .route(
            "/maybe",
            get(|claims: Option<Claims>| async move {
                claims.map_or("anonymous".to_owned(), |c| {
                    c.sub.clone().unwrap_or_default()
                })
            }),
        )
        .route("/admin", get(|| async { "admin area" }).layer(admin_only))
        .layer(
            ServiceBuilder::new()
                .layer(CorrelationIdLayer::new())
                .layer(auth),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

async fn raw(addr: SocketAddr, path: &str, extra_headers: &[String]) -> String {
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for header in extra_headers {
        request.push_str(header);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        stream.read_to_end(&mut buf),
    )
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}

fn header<'r>(response: &'r str, name: &str) -> Option<&'r str> {
    response.lines().find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn valid_token_reaches_the_handler_with_its_claims() {
    let addr = serve().await;
    let response = raw(
        addr,
        "/me",
        &[format!("Authorization: Bearer {}", valid("read"))],
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ann"), "{response}");
    assert!(header(&response, "x-request-id").is_some(), "{response}");
}

// RFC 6750 §3 on the wire: an anonymous request to a route that needs
// claims gets 401 with the challenge, no-store, and the correlation ID.
#[tokio::test]
async fn anonymous_request_to_a_claims_route_is_challenged() {
    let addr = serve().await;
    let response = raw(addr, "/me", &[]).await;
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert_eq!(
        header(&response, "www-authenticate"),
        Some(r#"Bearer realm="socket""#)
    );
    assert!(header(&response, "x-request-id").is_some(), "{response}");

    let response = raw(addr, "/maybe", &[]).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("anonymous"), "{response}");
}

// RFC 6750 §3.1: two Authorization lines on the wire → 400 invalid_request.
#[tokio::test]
async fn two_authorization_lines_are_an_invalid_request() {
    let addr = serve().await;
    let token = valid("read");
    let response = raw(
        addr,
        "/maybe",
        &[
            format!("Authorization: Bearer {token}"),
            format!("Authorization: Bearer {token}"),
        ],
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(
        header(&response, "www-authenticate")
            .unwrap()
            .contains(r#"error="invalid_request""#),
        "{response}"
    );
    assert_eq!(header(&response, "cache-control"), Some("no-store"));
}

// RFC 6750 §3: bad token → 401 invalid_token even in optional mode;
// missing scope → 403 insufficient_scope.
#[tokio::test]
async fn bad_tokens_and_missing_scopes_on_the_wire() {
    let addr = serve().await;
    let oversized = "a".repeat(8 * 1024 + 1);
    for bad in [
        "x.y.z".to_owned(),
        oversized,
        token(serde_json::json!({ "sub": "ann" })),
    ] {
        let response = raw(addr, "/maybe", &[format!("Authorization: Bearer {bad}")]).await;
        assert!(response.starts_with("HTTP/1.1 401"), "{response}");
        assert!(
            header(&response, "www-authenticate")
                .unwrap()
                .starts_with(r#"Bearer realm="socket", error="invalid_token""#),
            "{response}"
        );
    }
    let response = raw(
        addr,
        "/admin",
        &[format!("Authorization: Bearer {}", valid("read"))],
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert_eq!(
        header(&response, "www-authenticate"),
        Some(r#"Bearer realm="socket", error="insufficient_scope", scope="admin""#)
    );
    let response = raw(
        addr,
        "/admin",
        &[format!("Authorization: Bearer {}", valid("admin"))],
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}
