//! The whole stack against the stack a user would build from the peers,
//! in instructions and wall clock: the hello-world of `benches/e2e.sh`
//! (`tower_edge_peers::app`) served bare, behind tower-edge's `full` stack
//! and behind the `peers` stack (tower-http request IDs + `TraceLayer`,
//! tower_governor by IP and by subject or IP with headers, jwt-authorizer
//! in optional mode, a hand-written ETag step), driven as one `Router`
//! each, an anonymous GET from one peer address (what wrk sends).
//!
//! `cargo bench --bench full_stack_peers`; instructions:
//! `bash benches/icount.sh --peers full_stack_peers
//! full_stack_vs_peers/{bare,tower_edge,peers}/anonymous`. The goal
//! (issue 23): ours costs at most 0.7x the peers' overhead over bare.

#[path = "../../common/mod.rs"]
mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::Router;
use axum::extract::ConnectInfo;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::header::ETAG;
use http::{HeaderName, StatusCode};
use tower_edge_peers::{app, ours, peers};

const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 50_000);
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const HELLO_LEN: usize = "Hello, World!".len();

/// An anonymous GET / from [`PEER`], as axum's `serve` with connect info
/// hands it to the router.
fn request() -> http::Request<common::ReqBody> {
    let mut request = common::get("/", &[]);
    request.extensions_mut().insert(ConnectInfo(PEER));
    request
}

fn stacks(c: &mut Criterion) {
    let runtime = common::runtime();
    let mut group = c.benchmark_group("full_stack_vs_peers");
    let id = |name| BenchmarkId::new(name, "anonymous");
    let plain = common::ok_with_len(HELLO_LEN);
    // Both stacks do the same jobs: the request ID echoed, an ETag on the
    // 200 (and rate-limit headers, checked by the e2e run by hand).
    let stacked = |parts: &http::response::Parts, body: &bytes::Bytes| {
        plain(parts, body);
        assert_eq!(parts.status, StatusCode::OK);
        assert!(parts.headers.contains_key(X_REQUEST_ID), "{parts:?}");
        assert!(parts.headers.contains_key(ETAG), "{parts:?}");
    };
    let peers_router: Router = runtime.block_on(peers::peers_stack(app()));
    common::bench_service(&mut group, &runtime, id("bare"), app(), request, &plain);
    common::bench_service(
        &mut group,
        &runtime,
        id("tower_edge"),
        ours::full_stack(app()),
        request,
        stacked,
    );
    common::bench_service(
        &mut group,
        &runtime,
        id("peers"),
        peers_router,
        request,
        stacked,
    );
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = stacks
}
criterion_main!(benches);
