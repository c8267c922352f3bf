//! Helpers shared by the fuzz targets: input splitting and a runtime to
//! drive the layers through their public `tower::Service` API.

use std::future::Future;

use http::{HeaderMap, HeaderName, HeaderValue};

/// Splits fuzz input into header lines at `\n`, keeping only bytes a header
/// value can hold (anything else cannot arrive from hyper).
pub fn header_lines(data: &[u8]) -> Vec<HeaderValue> {
    data.split(|&b| b == b'\n')
        .filter_map(|line| HeaderValue::from_bytes(line).ok())
        .collect()
}

/// Appends each line under `name`.
pub fn append_all(headers: &mut HeaderMap, name: &HeaderName, lines: &[HeaderValue]) {
    for line in lines {
        headers.append(name.clone(), line.clone());
    }
}

/// Runs a future to completion on a per-thread current-thread runtime.
pub fn block_on<F: Future>(future: F) -> F::Output {
    thread_local! {
        static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime");
    }
    RUNTIME.with(|runtime| runtime.block_on(future))
}

thread_local! {
    /// The client IP the rate limiter's key extractor saw last.
    static SEEN_CLIENT_IP: std::cell::Cell<Option<std::net::IpAddr>> =
        const { std::cell::Cell::new(None) };
}

/// The rate-limit layer of the client-IP targets: trusted proxies
/// `10.0.0.0/8` and `fd00::/8`, `header` believed from them, and a key
/// extractor that records `RequestInfo::client_ip`.
pub fn client_ip_layer(
    header: tower_edge::rate_limit::ForwardedHeader,
) -> tower_edge::rate_limit::LimitRateLayer {
    use tower_edge::rate_limit::{Key, LimitRateLayer, Policy, Quota, RequestInfo};
    LimitRateLayer::builder()
        .policy(
            Policy::new("p", Quota::per_second(1_000_000_000)).key(|info: &RequestInfo<'_>| {
                SEEN_CLIENT_IP.with(|seen| seen.set(info.client_ip()));
                Some(Key::from_bytes(b"k"))
            }),
        )
        .trusted_proxies(["10.0.0.0/8", "fd00::/8"])
        .forwarded_header(header)
        .build()
        .unwrap()
}

/// One client-IP fuzz case: the first byte picks a trusted (IPv4 or IPv6)
/// or an untrusted peer, the rest are `name` lines. Never a panic, always
/// a 200, and an untrusted peer is always the client, whatever the header
/// says.
pub fn check_client_ip(
    layer: &tower_edge::rate_limit::LimitRateLayer,
    name: &'static str,
    data: &[u8],
) {
    use std::net::{IpAddr, SocketAddr};
    use tower::{Layer, ServiceExt};

    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let peer: IpAddr = match selector % 3 {
        0 => "10.0.0.2".parse().unwrap(),
        1 => "fd00::2".parse().unwrap(),
        _ => "203.0.113.9".parse().unwrap(),
    };
    let mut request = http::Request::new(());
    request
        .extensions_mut()
        .insert(tower_edge::rate_limit::PeerAddr(SocketAddr::new(
            peer, 4000,
        )));
    append_all(
        request.headers_mut(),
        &HeaderName::from_static(name),
        &header_lines(rest),
    );
    let service = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(()))
    }));
    SEEN_CLIENT_IP.with(|seen| seen.set(None));
    let response = block_on(service.oneshot(request)).unwrap();
    assert_eq!(response.status(), 200);
    let client = SEEN_CLIENT_IP
        .with(std::cell::Cell::get)
        .expect("a peer is known");
    if selector % 3 == 2 {
        assert_eq!(client, peer, "an untrusted peer's header was believed");
    }
}
