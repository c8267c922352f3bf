//! `Idempotency-Key` field lines (draft-ietf-httpapi-idempotency-key-header-07
//! §2.1): never a panic; two lines are refused; an accepted key is 1 to
//! max printable-ASCII characters and parses the same on its own.
#![no_main]

use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use tower_edge::idempotency::{IdempotencyKey, InvalidKey};

fuzz_target!(|data: &[u8]| {
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(max).max(1);
    let lines = fuzz_support::header_lines(rest);
    let mut headers = HeaderMap::new();
    fuzz_support::append_all(&mut headers, &"idempotency-key".parse().unwrap(), &lines);
    match IdempotencyKey::from_lines(headers.get_all("idempotency-key"), max) {
        Ok(None) => assert!(lines.is_empty()),
        Err(InvalidKey::Repeated) => assert!(lines.len() > 1),
        Ok(Some(key)) => {
            assert_eq!(lines.len(), 1);
            assert!((1..=max).contains(&key.as_str().len()));
            assert!(key.as_str().bytes().all(|b| (0x20..=0x7e).contains(&b)));
            assert_eq!(IdempotencyKey::parse(lines[0].as_bytes(), max), Ok(key));
        }
        Err(_) => assert_eq!(lines.len(), 1),
    }
});
