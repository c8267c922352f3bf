//! Property tests for which requests get gRPC-shaped rejections
//! (`tower_edge::rejection::GrpcProtocol`), against a reference written
//! from the specs: gRPC over HTTP/2 protocol spec ("Content-Type"),
//! gRPC-Web (PROTOCOL-WEB.md), RFC 9110 §8.3.1 (media types, parameters,
//! case-insensitive type and subtype) and §5.6.2 (tokens).

use http::{HeaderMap, HeaderValue, Version, header::CONTENT_TYPE};
use proptest::prelude::*;
use tower_edge::rejection::{GrpcProtocol, is_grpc};

/// The reference: lowercase the media type (before any `;`), trim it, and
/// compare with the three families and an optional `+token` suffix.
fn reference(version: Version, value: &str) -> Option<GrpcProtocol> {
    let media = value.split(';').next().unwrap().trim_matches([' ', '\t']);
    let media = media.to_ascii_lowercase();
    let (base, suffix) = match media.split_once('+') {
        Some((base, suffix)) => (base, Some(suffix)),
        None => (media.as_str(), None),
    };
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if let Some(suffix) = suffix
        && (suffix.is_empty() || !suffix.chars().all(tchar))
    {
        return None;
    }
    let protocol = match base {
        "application/grpc" => GrpcProtocol::Grpc,
        "application/grpc-web" => GrpcProtocol::GrpcWeb,
        "application/grpc-web-text" => GrpcProtocol::GrpcWebText,
        _ => return None,
    };
    if protocol == GrpcProtocol::Grpc && !matches!(version, Version::HTTP_2 | Version::HTTP_3) {
        return None;
    }
    Some(protocol)
}

fn versions() -> impl Strategy<Value = Version> {
    prop::sample::select(vec![
        Version::HTTP_09,
        Version::HTTP_10,
        Version::HTTP_11,
        Version::HTTP_2,
        Version::HTTP_3,
    ])
}

/// Values near the grammar: a gRPC base in random case, an optional
/// suffix of any visible characters, optional parameters.
fn near_grpc() -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec![
        "application/grpc",
        "application/grpc-web",
        "application/grpc-web-text",
        "application/grpc-",
        "application/gr",
        "text/grpc",
    ]);
    (
        base,
        prop::collection::vec(any::<bool>(), 30),
        "[ -~]{0,8}",
        prop::option::of("[ \t]?;[ -~]{0,12}"),
    )
        .prop_map(|(base, upper, suffix, params)| {
            let mut value: String = base
                .chars()
                .zip(upper)
                .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
                .collect();
            if !suffix.is_empty() {
                value.push('+');
                value.push_str(&suffix);
            }
            if let Some(params) = params {
                value.push_str(&params);
            }
            value
        })
}

proptest! {
    #[test]
    fn matches_the_reference(version in versions(), value in near_grpc()) {
        let Ok(header) = HeaderValue::from_str(&value) else { return Ok(()) };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, header);
        let expected = reference(version, &value);
        prop_assert_eq!(GrpcProtocol::of_request(version, &headers), expected, "{:?}", value);
        prop_assert_eq!(is_grpc(version, &headers), expected.is_some());
    }

    #[test]
    fn any_bytes_never_panic(version in versions(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        if let Ok(header) = HeaderValue::from_bytes(&bytes) {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, header);
            let got = GrpcProtocol::of_request(version, &headers);
            if let Ok(text) = std::str::from_utf8(&bytes) {
                prop_assert_eq!(got, reference(version, text));
            }
        }
    }
}
