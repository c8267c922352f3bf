//! tower-edge on plain hyper 1 + hyper-util, without a framework.
//!
//! ```text
//! cargo run --example hyper
//! ```
//!
//! Shows the two things a framework otherwise does for you: inserting the
//! peer address into each request's extensions (the rate limiter keys on
//! it), and running a `tower` stack as a hyper service.
//!
//! Environment (all optional): `BIND` (default `127.0.0.1:3001`), `RUST_LOG`.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};
use tower_edge::correlation::{CorrelationId, CorrelationIdLayer};

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(value.to_string()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The application's router: a plain async function.
async fn route(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let id = request
        .extensions()
        .get::<CorrelationId>()
        .map(|id| id.as_str().to_owned());
    Ok(match (request.method(), request.uri().path()) {
        (&Method::GET, "/health") => json(StatusCode::OK, serde_json::json!({ "status": "ok" })),
        (&Method::GET, "/hello") => json(
            StatusCode::OK,
            serde_json::json!({ "message": "hello", "correlation_id": id }),
        ),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "title": "Not Found", "status": 404 }),
        ),
    })
}

/// The application as a tower service: the tower-edge stack around
/// [`route`], outermost first.
pub fn app() -> impl Service<
    Request<Incoming>,
    Response = Response<impl http_body::Body<Data = Bytes, Error = BoxError> + Send + 'static>,
    Error = Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .service_fn(route)
}

/// Accepts connections on `listener` until `shutdown`, then drains them.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let app = app();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                // Each request learns the TCP peer through its extensions.
                let service = app.clone().map_request(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(peer);
                    request
                });
                let connection = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service))
                    .into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(err) = connection.await {
                        tracing::debug!(%err, "connection error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    graceful.shutdown().await;
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
        .unwrap_or_else(|_| "127.0.0.1:3001".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("tower-edge hyper example listening on http://{addr}");
    println!();
    println!("Try:");
    println!("  curl -i http://{addr}/health");
    println!("  curl -i http://{addr}/hello -H 'x-request-id: my-id-123'");
    println!();
    println!("Ctrl-C stops the server gracefully.");
    serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    })
    .await;
    Ok(())
}
