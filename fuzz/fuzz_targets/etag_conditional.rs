//! If-Match / If-None-Match / If-Modified-Since / If-Unmodified-Since lists
//! (RFC 9110 §13) through the public `Preconditions` API, and `ETag`
//! parsing: never a panic; a parsed tag round-trips.
#![no_main]

use http::header::{IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE};
use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use tower_edge::cache_headers::{ETag, HttpDate, Preconditions, Representation};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let lines = fuzz_support::header_lines(rest);
    let names = [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
    ];
    let mut headers = HeaderMap::new();
    for (i, line) in lines.iter().enumerate() {
        // The selector spreads lines over the four headers.
        let name = &names[(usize::from(selector) + i) % 4];
        headers.append(name.clone(), line.clone());

        if let Ok(tag) = ETag::from_header_value(line) {
            let again =
                ETag::from_header_value(tag.header_value()).expect("a parsed tag re-parses");
            assert_eq!(again, tag);
            assert!(tag.weak_eq(&again));
            assert_eq!(tag.strong_eq(&again), !tag.is_weak());
        }
    }
    let method = match selector % 4 {
        0 => Method::GET,
        1 => Method::HEAD,
        2 => Method::PUT,
        _ => Method::DELETE,
    };
    let preconditions = Preconditions::from_request(&method, &headers);
    let current = match selector >> 6 {
        0 => Representation::missing(),
        1 => Representation::new(),
        2 => Representation::new().etag(ETag::strong("v1").unwrap()),
        _ => Representation::new()
            .etag(ETag::weak("v1").unwrap())
            .last_modified(HttpDate::from_unix_seconds(1_700_000_000).unwrap()),
    };
    let _ = preconditions.evaluate(&current);
    if let Err(response) = preconditions.check(&current) {
        let status = response.status();
        assert!(status == 304 || status == 412, "{status}");
        if status == 304 {
            assert!(method == Method::GET || method == Method::HEAD);
        }
    }
});
