//! Property tests of the rate limiter's client-IP resolution through the
//! public API: a policy whose key extractor records
//! `RequestInfo::client_ip()`.
//!
//! Client IP (RFC 7239 §8.1: forwarding headers are only as good as the
//! proxies that wrote them; X-Forwarded-For, which has no RFC, alike): when
//! the TCP peer is not a trusted proxy, use the peer and ignore forwarding
//! headers. Otherwise read *all* X-Forwarded-For lines (one list, RFC 9110
//! §5.3), walk right to left skipping trusted CIDRs; the first untrusted
//! valid address is the client. `Forwarded` (RFC 7239 §4, §5.2) likewise.
//! Never the leftmost entry. The module's documented rule for
//! entries that are not addresses: the walk ends at the last trusted hop.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use http::{HeaderValue, Request, Response};
use proptest::prelude::*;
use tower::{Service, ServiceExt};
use tower_edge::rate_limit::{ForwardedHeader, Key, LimitRateLayer, PeerAddr, Policy, Quota};
use tower_layer::Layer;

/// One hop as a proxy (or a lying client) wrote it.
#[derive(Debug, Clone)]
enum Node {
    /// An address and how it is written.
    Addr(IpAddr, Style),
    /// Not an address.
    Garbage(&'static str),
}

#[derive(Debug, Clone, Copy)]
enum Style {
    Plain,
    /// `1.2.3.4:80` or `[2001:db8::1]:80`.
    Port(u16),
    /// `[2001:db8::1]` (IPv6 only; plain for IPv4).
    Brackets,
}

const TRUSTED: [&str; 2] = ["10.0.0.0/8", "fd00::/8"];

fn is_trusted(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.octets()[0] == 10,
        IpAddr::V6(v6) => v6.octets()[0] == 0xfd,
    }
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        // Any address; most are untrusted.
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from(n))),
        any::<u128>().prop_map(|n| IpAddr::V6(Ipv6Addr::from(n))),
        // Trusted ones.
        any::<u32>().prop_map(|n| IpAddr::V4(Ipv4Addr::from((n & 0x00ff_ffff) | 0x0a00_0000))),
        any::<u128>()
            .prop_map(|n| IpAddr::V6(Ipv6Addr::from((n & !(0xffu128 << 120)) | (0xfdu128 << 120)))),
        // IPv4-mapped IPv6, trusted or not.
        any::<u32>().prop_map(|n| IpAddr::V6(Ipv4Addr::from(n).to_ipv6_mapped())),
        any::<u32>().prop_map(|n| IpAddr::V6(
            Ipv4Addr::from((n & 0x00ff_ffff) | 0x0a00_0000).to_ipv6_mapped()
        )),
    ]
}

fn node() -> impl Strategy<Value = Node> {
    let style = prop_oneof![
        Just(Style::Plain),
        any::<u16>().prop_map(Style::Port),
        Just(Style::Brackets),
    ];
    prop_oneof![
        6 => (ip(), style).prop_map(|(ip, style)| Node::Addr(ip, style)),
        1 => prop::sample::select(vec![
            "unknown", "_hidden", "", "garbage", "1.2.3", "[::1", "1.2.3.4:",
            "300.1.1.1", "[fd00::1]x", "1.2.3.4:123456", "::ffff:1.2.3.4:80",
        ])
        .prop_map(Node::Garbage),
    ]
}

fn render(node: &Node) -> String {
    match node {
        Node::Garbage(text) => (*text).to_owned(),
        Node::Addr(IpAddr::V4(v4), Style::Port(port)) => format!("{v4}:{port}"),
        Node::Addr(IpAddr::V4(v4), _) => v4.to_string(),
        Node::Addr(IpAddr::V6(v6), Style::Plain) => v6.to_string(),
        Node::Addr(IpAddr::V6(v6), Style::Brackets) => format!("[{v6}]"),
        Node::Addr(IpAddr::V6(v6), Style::Port(port)) => format!("[{v6}]:{port}"),
    }
}

/// The documented rule, written independently of the implementation.
fn expected(peer: IpAddr, lines: &[Vec<Node>]) -> IpAddr {
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    for node in lines.iter().flatten().rev() {
        match node {
            Node::Addr(ip, _) if is_trusted(*ip) => client = *ip,
            Node::Addr(ip, _) => return *ip,
            Node::Garbage(_) => return client,
        }
    }
    client
}

/// Resolves the client IP of one request through the layer.
fn resolve(header: ForwardedHeader, peer: IpAddr, name: &str, lines: &[String]) -> Option<IpAddr> {
    let lines: Vec<&[u8]> = lines.iter().map(String::as_bytes).collect();
    resolve_bytes(header, peer, name, &lines)
}

/// [`resolve`] with header lines given as bytes (obs-text included).
fn resolve_bytes(
    header: ForwardedHeader,
    peer: IpAddr,
    name: &str,
    lines: &[&[u8]],
) -> Option<IpAddr> {
    let seen = Arc::new(Mutex::new(None));
    let record = Arc::clone(&seen);
    let layer = LimitRateLayer::builder()
        .policy(Policy::new("p", Quota::per_second(1000)).key(
            move |info: &tower_edge::rate_limit::RequestInfo<'_>| {
                *record.lock().unwrap() = Some(info.client_ip());
                Some(Key::from_bytes(b"k"))
            },
        ))
        .trusted_proxies(TRUSTED)
        .forwarded_header(header)
        .build()
        .unwrap();
    let mut service = layer.layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(PeerAddr(SocketAddr::new(peer, 4000)));
    for line in lines {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(line).unwrap(),
        );
    }
    let response =
        futures_executor(
            async move { service.ready().await.unwrap().call(request).await.unwrap() },
        );
    assert_eq!(response.status(), 200);
    let seen = seen.lock().unwrap().take();
    seen.expect("the key extractor ran")
}

fn futures_executor<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn peer() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        Just("10.0.0.2".parse().unwrap()),
        Just("fd00::2".parse().unwrap()),
        Just("203.0.113.5".parse().unwrap()),
        ip(),
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![",", ", ", " ,", " , ", ",\t"])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // X-Forwarded-For over several lines (one list, RFC 9110 §5.3), right to
    // left; the chosen address is the rightmost untrusted valid one (never
    // one left of it), the last trusted hop when garbage comes first, or the
    // peer when the peer is untrusted.
    #[test]
    fn x_forwarded_for_picks_the_rightmost_untrusted_address(
        peer in peer(),
        lines in prop::collection::vec(prop::collection::vec(node(), 1..5), 0..4),
        sep in separator(),
    ) {
        let rendered: Vec<String> = lines
            .iter()
            .map(|line| line.iter().map(render).collect::<Vec<_>>().join(sep))
            .collect();
        let got = resolve(ForwardedHeader::XForwardedFor, peer, "x-forwarded-for", &rendered)
            .expect("a peer is known");
        let want = expected(peer, &lines);
        prop_assert_eq!(got.to_canonical(), want.to_canonical(), "lines {:?}", rendered);
        // The key is canonical: an IPv4-mapped address is reported as IPv4.
        prop_assert_eq!(got, got.to_canonical(), "lines {:?}", rendered);
        // The same chain in `Forwarded` is ignored when XFF is configured.
        let forwarded: Vec<String> = lines.iter().map(|line| {
            line.iter().map(|n| format!("for=\"{}\"", render(n))).collect::<Vec<_>>().join(", ")
        }).collect();
        let ignored = resolve(ForwardedHeader::XForwardedFor, peer, "forwarded", &forwarded).unwrap();
        prop_assert_eq!(ignored, peer.to_canonical());
    }

    // `Forwarded` (RFC 7239 §4, §5.2) likewise; quoted values, extra
    // parameters (§5.5), elements without `for`.
    #[test]
    fn forwarded_picks_the_rightmost_untrusted_address(
        peer in peer(),
        lines in prop::collection::vec(prop::collection::vec((node(), 0u8..4), 1..5), 0..4),
    ) {
        let rendered: Vec<String> = lines
            .iter()
            .map(|line| {
                line.iter()
                    .map(|(node, variant)| {
                        let value = render(node);
                        match (node, variant) {
                            // An element without `for` is not an address.
                            (Node::Garbage(_), 0) => "proto=https".to_owned(),
                            (_, 1) => format!("for=\"{}\";proto=https;by=\"a,b;c\"", value.replace('"', "\\\"")),
                            (_, 2) => format!("proto=http;For=\"{value}\""),
                            (Node::Addr(IpAddr::V4(_), Style::Plain), _) => format!("for={value}"),
                            _ => format!("for=\"{value}\""),
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        let got = resolve(ForwardedHeader::Forwarded, peer, "forwarded", &rendered)
            .expect("a peer is known");
        let nodes: Vec<Vec<Node>> = lines
            .iter()
            .map(|line| line.iter().map(|(node, _)| node.clone()).collect())
            .collect();
        let want = expected(peer, &nodes);
        prop_assert_eq!(got.to_canonical(), want.to_canonical(), "lines {:?}", rendered);
        prop_assert_eq!(got, got.to_canonical(), "lines {:?}", rendered);
    }

    // Bad client input never panics: arbitrary visible-ASCII header lines.
    #[test]
    fn arbitrary_forwarding_headers_never_panic(
        lines in prop::collection::vec("[ -~]{0,60}", 0..4),
        forwarded in any::<bool>(),
    ) {
        let (header, name) = if forwarded {
            (ForwardedHeader::Forwarded, "forwarded")
        } else {
            (ForwardedHeader::XForwardedFor, "x-forwarded-for")
        };
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        // A peer is known, so a client IP always is; the request went through.
        prop_assert!(resolve(header, peer, name, &lines).is_some());
    }

    // Regression (review): a trusted proxy appends the client's address to
    // the client's own line (RFC 7239 §4 allows it for `Forwarded`, and
    // X-Forwarded-For is written that way). Whatever the client put to its
    // left (unbalanced quotes, backslashes, separators, bytes that are not
    // ASCII), the proxy's entry is the one read.
    #[test]
    fn the_client_part_of_a_line_cannot_hide_the_proxy_entry(
        client in prop::collection::vec(
            prop::sample::select(vec![
                b'"', b'\\', b',', b';', b'=', b' ', b'\t', b'f', b'o', b'r', b'x',
                b'1', b'9', b'.', b':', b'[', b']', 0xc3, 0xa9, 0xff,
            ]),
            0..40,
        ),
        addr in ip().prop_filter("untrusted", |ip| !is_trusted(*ip)),
        forwarded in any::<bool>(),
    ) {
        let (header, name, entry) = if forwarded {
            (ForwardedHeader::Forwarded, "forwarded", format!("for=\"{}\"", render(&Node::Addr(addr, Style::Brackets))))
        } else {
            (ForwardedHeader::XForwardedFor, "x-forwarded-for", render(&Node::Addr(addr, Style::Plain)))
        };
        let mut line = client.clone();
        line.extend_from_slice(b", ");
        line.extend_from_slice(entry.as_bytes());
        let peer: IpAddr = "10.0.0.2".parse().unwrap();
        let got = resolve_bytes(header, peer, name, &[&line]).expect("a peer is known");
        prop_assert_eq!(got, addr.to_canonical(), "line {:?}", String::from_utf8_lossy(&line));
    }
}
