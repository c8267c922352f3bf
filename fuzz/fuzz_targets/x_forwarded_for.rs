//! `x-forwarded-for` lines through the public rate-limit layer behind a trusted
//! peer: never a panic; an untrusted peer is always the client, whatever
//! the header says.
#![no_main]

use std::cell::Cell;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use http::{HeaderName, Request, Response};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt};
use tower_edge::rate_limit::{
    ForwardedHeader, Key, PeerAddr, Policy, Quota, RateLimitLayer, RequestInfo,
};

thread_local! {
    static SEEN: Cell<Option<IpAddr>> = const { Cell::new(None) };
}

fn layer() -> &'static RateLimitLayer {
    static LAYER: OnceLock<RateLimitLayer> = OnceLock::new();
    LAYER.get_or_init(|| {
        RateLimitLayer::builder()
            .policy(Policy::new("p", Quota::per_second(1_000_000_000)).key(
                |info: &RequestInfo<'_>| {
                    SEEN.with(|seen| seen.set(info.client_ip()));
                    Some(Key::from_bytes(b"k"))
                },
            ))
            .trusted_proxies(["10.0.0.0/8", "fd00::/8"])
            .forwarded_header(ForwardedHeader::XForwardedFor)
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let peer: IpAddr = match selector % 3 {
        0 => "10.0.0.2".parse().unwrap(),
        1 => "fd00::2".parse().unwrap(),
        _ => "203.0.113.9".parse().unwrap(),
    };
    let lines = fuzz_support::header_lines(rest);
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(peer, 4000)));
    fuzz_support::append_all(
        request.headers_mut(),
        &HeaderName::from_static("x-forwarded-for"),
        &lines,
    );
    let service = layer().layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    SEEN.with(|seen| seen.set(None));
    let response = fuzz_support::block_on(service.oneshot(request)).unwrap();
    assert_eq!(response.status(), 200);
    let client = SEEN.with(Cell::get).expect("a peer is known");
    if selector % 3 == 2 {
        assert_eq!(client, peer, "an untrusted peer's header was believed");
    }
});
