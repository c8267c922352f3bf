//! Drives the tonic example over a real socket with a generated client.

#[allow(dead_code)]
#[path = "../examples/tonic.rs"]
mod example;

use example::proto::HelloRequest;
use example::proto::greeter_client::GreeterClient;

async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(example::serve(listener, std::future::pending()));
    format!("http://{addr}")
}

#[tokio::test]
async fn say_hello_carries_the_correlation_id() {
    let endpoint = start().await;
    let mut client = GreeterClient::connect(endpoint).await.unwrap();
    let mut request = tonic::Request::new(HelloRequest { name: "Ada".into() });
    request
        .metadata_mut()
        .insert("x-request-id", "grpc-call-1".parse().unwrap());
    let response = client.say_hello(request).await.unwrap();
    assert_eq!(
        response.metadata().get("x-request-id").unwrap(),
        "grpc-call-1"
    );
    let reply = response.into_inner();
    assert_eq!(reply.message, "Hello, Ada!");
    assert_eq!(reply.correlation_id, "grpc-call-1");
}

#[tokio::test]
async fn health_is_served() {
    let endpoint = start().await;
    let channel = tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let response = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "greeter.v1.Greeter".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        response.status(),
        tonic_health::pb::health_check_response::ServingStatus::Serving
    );
}
