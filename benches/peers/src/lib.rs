//! The stacks of tower-edge's end-to-end and whole-stack benchmarks, shared
//! by `e2e_server` (wrk, `benches/e2e.sh`) and the `full_stack_peers`
//! criterion bench (instructions, `benches/icount.sh`): the hello-world
//! [`app`], tower-edge's stacks ([`ours`]) and the same jobs done with the
//! peer crates ([`peers`]).

pub mod ours;
pub mod peers;

use axum::Router;
use axum::routing::get;

/// The HS256 secret both stacks verify tokens with.
pub const SECRET: &str = "e2e-bench-secret-of-at-least-32-bytes";

/// The hello-world application every stack wraps.
pub fn app() -> Router {
    Router::new().route("/", get(|| async { "Hello, World!" }))
}
