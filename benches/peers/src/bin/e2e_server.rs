//! The end-to-end benchmark server: an axum hello-world, bare, behind
//! tower-edge's full stack, or behind the same jobs done with the peer
//! crates. Driven by `benches/e2e.sh`.
//!
//! ```text
//! e2e_server --stack bare|full|peers|<layer>[,<layer>...] [--addr 127.0.0.1:3000]
//! ```
//!
//! `full` is [`tower_edge_peers::ours::full_stack`] (correlation ->
//! rate_limit(by IP) -> jwt_auth (optional) -> rate_limit(by subject or IP)
//! -> cache_headers), `peers` is [`tower_edge_peers::peers::peers_stack`]
//! (tower-http request IDs and `TraceLayer`, tower_governor twice,
//! jwt-authorizer, a hand-written ETag step), each as one `ServiceBuilder`
//! in one `Router::layer`. `otel` is left out of both: without an SDK
//! installed it measures a no-op exporter.
//!
//! A list of layer names (`correlation`, `rate-limit-ip`, `jwt`,
//! `rate-limit-client`, `cache-headers`) serves only those, in the same
//! order, each in its own `Router::layer` (so each also pays axum's boxing
//! of the layered route): what one layer costs end to end.

use std::net::SocketAddr;
use std::process::ExitCode;

use tower_edge_peers::{app, ours, peers};

#[derive(Clone, PartialEq, Eq, Debug)]
enum Stack {
    Bare,
    Full,
    /// The same jobs with the peer crates.
    Peers,
    /// Some of the layers, by name.
    Only(Vec<String>),
}

fn parse_args() -> Result<(Stack, SocketAddr), String> {
    let mut stack = None;
    let mut addr: SocketAddr = ([127, 0, 0, 1], 3000).into();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--stack" => {
                stack = Some(match args.next().as_deref() {
                    Some("bare") => Stack::Bare,
                    Some("full") => Stack::Full,
                    Some("peers") => Stack::Peers,
                    Some(list) => {
                        let names: Vec<String> = list.split(',').map(str::to_owned).collect();
                        if let Some(bad) =
                            names.iter().find(|n| !ours::LAYERS.contains(&n.as_str()))
                        {
                            return Err(format!(
                                "--stack: unknown layer {bad:?} (layers: {})",
                                ours::LAYERS.join(", ")
                            ));
                        }
                        Stack::Only(names)
                    }
                    None => {
                        return Err("--stack takes bare, full, peers or a list of layers".into());
                    }
                })
            }
            "--addr" => {
                let value = args.next().ok_or("--addr takes an address")?;
                addr = value
                    .parse()
                    .map_err(|e| format!("--addr {value:?}: {e}"))?;
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let stack = stack.ok_or("--stack bare|full|peers is required")?;
    if !addr.ip().is_loopback() {
        return Err(format!("--addr must be a loopback address, not {addr}"));
    }
    Ok((stack, addr))
}

#[tokio::main]
async fn main() -> ExitCode {
    let (stack, addr) = match parse_args() {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!(
                "e2e_server: {message}\nusage: e2e_server --stack bare|full|peers|<layer>[,<layer>...] [--addr 127.0.0.1:3000]"
            );
            return ExitCode::from(2);
        }
    };
    let router = match &stack {
        Stack::Bare => app(),
        Stack::Full => ours::full_stack(app()),
        Stack::Peers => peers::peers_stack(app()).await,
        Stack::Only(names) => ours::some_layers(app(), names),
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("e2e_server: cannot bind {addr}: {err}");
            return ExitCode::FAILURE;
        }
    };
    println!("e2e_server: {stack:?} stack listening on http://{addr}/");
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    if let Err(err) = axum::serve(listener, service).await {
        eprintln!("e2e_server: {err}");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
