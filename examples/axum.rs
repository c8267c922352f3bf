//! A small API server with tower-edge's layers in the recommended order.
//!
//! ```text
//! cargo run --example axum
//! ```
//!
//! Environment (all optional): `BIND` (default `127.0.0.1:3000`), `RUST_LOG`.

use std::net::SocketAddr;

use axum::{Extension, Json, Router, routing::get};
use serde_json::json;
use tower::ServiceBuilder;
use tower_edge::correlation::{CorrelationId, CorrelationIdLayer};

/// The application: routes plus the tower-edge stack, outermost first.
pub fn app() -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/hello", get(hello))
        .layer(ServiceBuilder::new().layer(CorrelationIdLayer::new()))
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn hello(Extension(id): Extension<CorrelationId>) -> Json<serde_json::Value> {
    // This log line carries `correlation_id` from the layer's span.
    tracing::info!("saying hello");
    Json(json!({ "message": "hello", "correlation_id": id.as_str() }))
}

#[allow(dead_code)] // unused when the example is compiled into its test
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();

    let addr: SocketAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1:3000".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;

    println!("tower-edge axum example listening on http://{addr}");
    println!();
    println!("Try:");
    println!("  curl -i http://{addr}/health");
    println!("  curl -i http://{addr}/hello -H 'x-request-id: my-id-123'   # echoed");
    println!(
        "  curl -i http://{addr}/hello -H 'x-request-id: bad id!'     # replaced by a UUID v7"
    );
    println!();
    println!("Ctrl-C stops the server gracefully.");

    axum::serve(
        listener,
        app().into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    })
    .await?;
    Ok(())
}
