use super::*;
use http::HeaderValue;

fn config(trusted: &[&str], header: ForwardedHeader) -> ClientIpConfig {
    ClientIpConfig {
        trusted: ClientIpConfig::parse_trusted(trusted).unwrap(),
        header,
        ..ClientIpConfig::default()
    }
}

fn ext(peer: &str) -> Extensions {
    let mut e = Extensions::new();
    e.insert(PeerAddr(peer.parse().unwrap()));
    e
}

fn headers<L: AsRef<[u8]>>(name: &str, lines: &[L]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in lines {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(line.as_ref()).unwrap(),
        );
    }
    h
}

fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}

// RFC 7239 §8.1 (forwarding headers are only as good as the proxies
// that wrote them): when the TCP peer is not a trusted proxy, use the
// peer and ignore forwarding headers.
#[test]
fn untrusted_peer_ignores_forwarding_headers() {
    let c = config(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
    let h = headers("x-forwarded-for", &["1.1.1.1, 10.0.0.1"]);
    assert_eq!(c.resolve(&h, &ext("203.0.113.9:4000")), ip("203.0.113.9"));
    let c = config(&[], ForwardedHeader::Forwarded);
    let h = headers("forwarded", &["for=1.1.1.1"]);
    assert_eq!(c.resolve(&h, &ext("203.0.113.9:4000")), ip("203.0.113.9"));
}

// X-Forwarded-For (no RFC; read as RFC 7239 §5.2 reads `for`, and as
// one list over several lines, RFC 9110 §5.3): read all lines, right to
// left, skipping trusted CIDRs; never the leftmost entry.
#[test]
fn xff_walks_all_lines_right_to_left() {
    let c = config(
        &["10.0.0.0/8", "192.168.0.0/16"],
        ForwardedHeader::XForwardedFor,
    );
    let peer = ext("10.0.0.2:1234");
    // The client spoofs a leftmost entry; the first proxy appends the real
    // client, the second proxy is trusted.
    let h = headers("x-forwarded-for", &["6.6.6.6, 198.51.100.7, 10.0.0.1"]);
    assert_eq!(c.resolve(&h, &peer), ip("198.51.100.7"));
    // The same across several lines; the last line is the nearest proxy.
    let h = headers(
        "x-forwarded-for",
        &["6.6.6.6", "198.51.100.7", "192.168.1.1, 10.0.0.1"],
    );
    assert_eq!(c.resolve(&h, &peer), ip("198.51.100.7"));
    // Ports and brackets as some proxies write them.
    let h = headers("x-forwarded-for", &["[2001:db8::7]:443, 10.0.0.1:80"]);
    assert_eq!(c.resolve(&h, &peer), ip("2001:db8::7"));
    let h = headers("x-forwarded-for", &["198.51.100.7:5555"]);
    assert_eq!(c.resolve(&h, &peer), ip("198.51.100.7"));
    // Garbage stops the walk at the last trusted hop.
    let h = headers("x-forwarded-for", &["6.6.6.6, garbage, 10.0.0.1"]);
    assert_eq!(c.resolve(&h, &peer), ip("10.0.0.1"));
    // No header behind a trusted peer: the peer.
    assert_eq!(c.resolve(&HeaderMap::new(), &peer), ip("10.0.0.2"));
    // All hops trusted: the leftmost trusted one.
    let h = headers("x-forwarded-for", &["192.168.5.5, 10.0.0.1"]);
    assert_eq!(c.resolve(&h, &peer), ip("192.168.5.5"));
}

// `Forwarded` (RFC 7239 §4, §6) likewise — quoted values, IPv6 in
// brackets with ports (§6.1); `unknown` (§6.2) and obfuscated (§6.3)
// identifiers are not addresses.
#[test]
fn forwarded_is_parsed() {
    let c = config(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
    let peer = ext("10.1.1.1:1");
    let cases: [(&[&str], Option<IpAddr>); 8] = [
        (
            &["for=192.0.2.60;proto=http;by=203.0.113.43"],
            ip("192.0.2.60"),
        ),
        (
            &["for=\"[2001:db8:cafe::17]:4711\""],
            ip("2001:db8:cafe::17"),
        ),
        (&["For=\"[2001:db8:cafe::17]\""], ip("2001:db8:cafe::17")),
        (
            &["for=\"192.0.2.43:47011\", for=10.0.0.9"],
            ip("192.0.2.43"),
        ),
        (
            &["for=6.6.6.6, for=198.51.100.1;by=\"a,b\"", "for=10.0.0.3"],
            ip("198.51.100.1"),
        ),
        // `unknown` and obfuscated: the walk stops at the last trusted hop.
        (&["for=6.6.6.6, for=unknown, for=10.0.0.5"], ip("10.0.0.5")),
        (&["for=6.6.6.6, for=_hidden"], ip("10.1.1.1")),
        // An element without `for`.
        (&["for=6.6.6.6, proto=https"], ip("10.1.1.1")),
    ];
    for (lines, expected) in cases {
        assert_eq!(
            c.resolve(&headers("forwarded", lines), &peer),
            expected,
            "{lines:?}"
        );
    }
    // With XFF configured, a client-written Forwarded header is ignored.
    let xff = config(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
    let h = headers("forwarded", &["for=6.6.6.6"]);
    assert_eq!(xff.resolve(&h, &peer), ip("10.1.1.1"));
}

// Regression (review): the nearest proxy appends its entry to the
// client's `Forwarded` line (RFC 7239 §4). An unbalanced quote on the
// client's side used to swallow that entry, and the client's own
// `for=` became its key. RFC 7239 §5.2, §8.1: the first untrusted
// valid address from the right; never the client's choice.
#[test]
fn a_client_quote_cannot_swallow_the_proxy_entry() {
    let c = config(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
    let peer = ext("10.0.0.1:1");
    for line in [
        r#"for=9.9.9.9;x=", for=203.0.113.50"#,
        r#"for=9.9.9.9;x="\", for=203.0.113.50"#,
        r#"for="9.9.9.9, for=203.0.113.50"#,
        r#"for=9.9.9.9;x=a", for=203.0.113.50"#,
        r#"for=9.9.9.9;x="a\"b, for="203.0.113.50:80""#,
    ] {
        let h = headers("forwarded", &[line]);
        assert_eq!(c.resolve(&h, &peer), ip("203.0.113.50"), "{line}");
    }
    let h = headers(
        "forwarded",
        &[r#"for=9.9.9.9;x=", for="[2001:db8::5]:4711""#],
    );
    assert_eq!(c.resolve(&h, &peer), ip("2001:db8::5"));
    // When the walk reaches a malformed element, it stops at the last
    // trusted hop, as for `unknown`.
    for line in [
        r#"for=9.9.9.9;x=", for=10.0.0.7"#,
        r#"for=9.9.9.9;for=8.8.8.8, for=10.0.0.7"#,
        r#"for=9.9"9.9, for=10.0.0.7"#,
        r#"for="9.9.9.9"x, for=10.0.0.7"#,
        r#"f"or=9.9.9.9, for=10.0.0.7"#,
    ] {
        let h = headers("forwarded", &[line]);
        assert_eq!(c.resolve(&h, &peer), ip("10.0.0.7"), "{line}");
    }
    // A quoted comma and an escaped quote belong to their value.
    let h = headers(
        "forwarded",
        &[r#"for=6.6.6.6, for=198.51.100.1;x="a\",b", for=10.0.0.3"#],
    );
    assert_eq!(c.resolve(&h, &peer), ip("198.51.100.1"));
    let h = headers("forwarded", &[r#"for=198.51.100.1;x="a\\", for=10.0.0.3"#]);
    assert_eq!(c.resolve(&h, &peer), ip("198.51.100.1"));
}

// Regression (review): a byte that is not ASCII in the client's part of
// a line used to discard the whole line, proxy entry included, and key
// the request by the proxy. Only the entries the walk reaches count.
#[test]
fn bytes_that_are_not_ascii_only_matter_where_the_walk_reaches() {
    let peer = ext("10.0.0.1:1");
    let xff = config(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
    let h = headers("x-forwarded-for", &[b"\xc3\xa9, 203.0.113.50"]);
    assert_eq!(xff.resolve(&h, &peer), ip("203.0.113.50"));
    let h = headers("x-forwarded-for", &[b"\xc3\xa9, 10.0.0.9"]);
    assert_eq!(xff.resolve(&h, &peer), ip("10.0.0.9"));
    let forwarded = config(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
    let h = headers("forwarded", &[b"for=\"\xff\", for=203.0.113.50"]);
    assert_eq!(forwarded.resolve(&h, &peer), ip("203.0.113.50"));
    let h = headers("forwarded", &[b"for=\xff, for=10.0.0.9"]);
    assert_eq!(forwarded.resolve(&h, &peer), ip("10.0.0.9"));
}

// Regression (found by tests/proptests_client_ip.rs): an IPv4-mapped
// address in brackets is reported as the IPv4 address, like the bare
// form, so one client never shows up as two.
#[test]
fn bracketed_ipv4_mapped_addresses_are_canonical() {
    let c = config(&["10.0.0.0/8"], ForwardedHeader::XForwardedFor);
    let peer = ext("10.0.0.2:1");
    for line in [
        "[::ffff:198.51.100.7]:80",
        "[::ffff:198.51.100.7]",
        "::ffff:198.51.100.7",
    ] {
        let h = headers("x-forwarded-for", &[line]);
        assert_eq!(c.resolve(&h, &peer), ip("198.51.100.7"), "{line}");
    }
    let c = config(&["10.0.0.0/8"], ForwardedHeader::Forwarded);
    let h = headers("forwarded", &["for=\"[::ffff:198.51.100.7]:80\""]);
    assert_eq!(c.resolve(&h, &peer), ip("198.51.100.7"));
}

#[test]
fn peer_sources_in_order() {
    let c = ClientIpConfig {
        peer_hook: Some(Arc::new(|e: &Extensions| {
            e.get::<u32>().map(|_| ip("9.9.9.9").unwrap())
        })),
        ..ClientIpConfig::default()
    };
    let mut e = Extensions::new();
    assert_eq!(c.peer(&e), None);
    e.insert::<SocketAddr>("192.0.2.3:1".parse().unwrap());
    assert_eq!(c.peer(&e), ip("192.0.2.3"));
    e.insert(7u32);
    assert_eq!(c.peer(&e), ip("9.9.9.9"));
    e.insert(PeerAddr("192.0.2.1:1".parse().unwrap()));
    assert_eq!(c.peer(&e), ip("192.0.2.1"));
}

#[test]
fn cidr_parsing_and_matching() {
    let net: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(net.contains(ip("10.255.0.1").unwrap()));
    assert!(net.contains(ip("::ffff:10.1.2.3").unwrap()));
    assert!(!net.contains(ip("11.0.0.1").unwrap()));
    let v6: Cidr = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains(ip("2001:db8:ffff::1").unwrap()));
    assert!(!v6.contains(ip("2001:db9::1").unwrap()));
    let single: Cidr = "::1".parse().unwrap();
    assert!(single.contains(ip("::1").unwrap()));
    let any: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(any.contains(ip("8.8.8.8").unwrap()));
    assert!(
        "10.0.0.0/33"
            .parse::<Cidr>()
            .unwrap_err()
            .contains("0 to 32")
    );
    assert!("nope".parse::<Cidr>().is_err());
}
