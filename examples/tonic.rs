//! A gRPC service (tonic) behind tower-edge's layers.
//!
//! ```text
//! cargo run --example tonic
//! ```
//!
//! The protobuf code in `examples/proto/` is generated ahead of time with a
//! pure-Rust compiler (see `examples/proto/gen`), so no system `protoc` is
//! needed. gRPC health (`grpc.health.v1.Health`) and server reflection are
//! served too, so `grpcurl` works without the .proto file.
//!
//! Environment (all optional): `BIND` (default `127.0.0.1:50051`), `RUST_LOG`.

use std::net::SocketAddr;

use tonic::{Request, Response, Status};
use tower::ServiceBuilder;
use tower_edge::correlation::{CorrelationId, CorrelationIdLayer};

/// Code generated from `examples/proto/greeter.proto`.
#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod proto {
    include!("proto/greeter.v1.rs");

    /// The encoded file descriptor set, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("proto/greeter_descriptor.bin");
}

use proto::greeter_server::{Greeter, GreeterServer};
use proto::{HelloReply, HelloRequest};

/// The Greeter implementation.
#[derive(Debug, Default)]
pub struct MyGreeter;

#[tonic::async_trait]
impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let correlation_id = request
            .extensions()
            .get::<CorrelationId>()
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        let name = request.into_inner().name;
        tracing::info!("greeting");
        Ok(Response::new(HelloReply {
            message: format!("Hello, {name}!"),
            subject: String::new(),
            correlation_id,
        }))
    }
}

/// Serves the Greeter, health and reflection on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<GreeterServer<MyGreeter>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;

    // The tower-edge stack, outermost first, applied to every RPC.
    let layers = ServiceBuilder::new().layer(CorrelationIdLayer::new());

    tonic::transport::Server::builder()
        .layer(layers)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(GreeterServer::new(MyGreeter))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await?;
    Ok(())
}

#[allow(dead_code)] // unused when the example is compiled into its test
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let addr: SocketAddr = std::env::var("BIND")
        .unwrap_or_else(|_| "127.0.0.1:50051".to_owned())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("tower-edge tonic example listening on {addr}");
    println!();
    println!("Try (with grpcurl; reflection is on):");
    println!("  grpcurl -plaintext {addr} list");
    println!("  grpcurl -plaintext -d '{{\"name\":\"Ada\"}}' {addr} greeter.v1.Greeter/SayHello");
    println!("  grpcurl -plaintext {addr} grpc.health.v1.Health/Check");
    println!();
    println!("Ctrl-C stops the server gracefully.");
    serve(listener, async {
        let _ = tokio::signal::ctrl_c().await;
        println!("shutting down");
    })
    .await
}
