//! The `content-type` of a request through the public gRPC predicate: never
//! panics; gRPC over HTTP/1.1 is never gRPC (gRPC over HTTP/2 protocol
//! spec); whatever is gRPC names one of the three media types (gRPC,
//! gRPC-Web, gRPC-Web text; PROTOCOL-WEB.md), case-insensitively
//! (RFC 9110 §8.3.1).
#![no_main]

use http::{HeaderMap, Version, header::CONTENT_TYPE};
use libfuzzer_sys::fuzz_target;
use tower_edge::rejection::GrpcProtocol;

fuzz_target!(|data: &[u8]| {
    let lines = fuzz_support::header_lines(data);
    let mut headers = HeaderMap::new();
    fuzz_support::append_all(&mut headers, &CONTENT_TYPE, &lines);
    for version in [Version::HTTP_11, Version::HTTP_2] {
        let Some(protocol) = GrpcProtocol::of_request(version, &headers) else {
            continue;
        };
        let value = headers[CONTENT_TYPE].as_bytes().to_ascii_lowercase();
        assert!(value.trim_ascii_start().starts_with(b"application/grpc"));
        if protocol == GrpcProtocol::Grpc {
            assert_eq!(version, Version::HTTP_2);
        } else {
            assert!(value.trim_ascii_start().starts_with(b"application/grpc-web"));
        }
    }
});
