//! Incoming correlation IDs through the public layer: accepted iff
//! `^[A-Za-z0-9._:-]{1,128}$`, else replaced by a UUID and never echoed.
#![no_main]

use std::convert::Infallible;

use http::{Request, Response};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt};
use tower_edge::correlation::CorrelationIdLayer;

fn allowed(bytes: &[u8]) -> bool {
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(b))
}

fuzz_target!(|data: &[u8]| {
    let lines = fuzz_support::header_lines(data);
    let mut request = Request::new(());
    fuzz_support::append_all(
        request.headers_mut(),
        &http::HeaderName::from_static("x-request-id"),
        &lines,
    );
    let service = CorrelationIdLayer::new().layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    let response = fuzz_support::block_on(service.oneshot(request)).unwrap();
    let echoed = &response.headers()["x-request-id"];
    match lines.first() {
        Some(first) if allowed(first.as_bytes()) => assert_eq!(echoed, first),
        _ => {
            assert_eq!(echoed.len(), 36);
            assert!(lines.iter().all(|line| line != echoed));
        }
    }
});
