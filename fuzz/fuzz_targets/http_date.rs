//! HTTP-date parsing (RFC 9110 §5.6.7): never a panic; a parsed date
//! renders as an IMF-fixdate that parses back to the same second.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_edge::cache_headers::HttpDate;

fuzz_target!(|data: &[u8]| {
    for line in fuzz_support::header_lines(data) {
        if let Ok(date) = HttpDate::from_header_value(&line) {
            let rendered = date.to_header_value();
            assert_eq!(rendered.len(), 29, "{rendered:?}");
            assert_eq!(HttpDate::from_header_value(&rendered), Ok(date));
            assert_eq!(HttpDate::from_unix_seconds(date.unix_seconds()), Ok(date));
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = text.parse::<HttpDate>();
    }
});
