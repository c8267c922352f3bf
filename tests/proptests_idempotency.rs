//! Property tests of the `Idempotency-Key` parser against the `sfv` crate's
//! RFC 9651 parser: draft-ietf-httpapi-idempotency-key-header-07 §2.1 makes
//! the header an Item whose value is a String (RFC 9651 §3.3.3, §4.2.5).

use proptest::prelude::*;
use tower_edge::idempotency::{IdempotencyKey, InvalidKey};

/// What `sfv` reads from `input` as an Item: `Some(Some(s))` for a String,
/// `Some(None)` for another bare item, `None` when it does not parse.
fn sfv_string(input: &[u8]) -> Option<Option<String>> {
    let item = sfv::Parser::new(input).parse::<sfv::Item>().ok()?;
    Some(match item.bare_item {
        sfv::BareItem::String(s) => Some(s.as_str().to_owned()),
        _ => None,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    // RFC 9651 §4.1.6 serialisation round trip: any printable-ASCII key
    // serialised as an sf-string parses back to itself.
    #[test]
    fn serialised_strings_round_trip(key in "[ -~]{1,64}") {
        let value = sfv::String::from_string(key.clone()).unwrap();
        let serialised = sfv::ItemSerializer::new().bare_item(&value).finish();
        let parsed = IdempotencyKey::parse(serialised.as_bytes(), 64).unwrap();
        prop_assert_eq!(parsed.as_str(), key.as_str());
    }

    // For values that start as an sf-string, we accept exactly what an
    // RFC 9651 parser accepts as a String Item (non-empty, within bounds),
    // with the same value.
    #[test]
    fn quoted_values_agree_with_rfc_9651(body in "[ -~\\t]{0,40}", params in "(;[a-z*][a-z0-9_.*-]{0,3}(=[ -~]{0,6})?){0,2}") {
        let input = format!("\"{body}{params}");
        let ours = IdempotencyKey::parse(input.as_bytes(), 255);
        match sfv_string(input.as_bytes()) {
            Some(Some(s)) if s.is_empty() => prop_assert_eq!(ours, Err(InvalidKey::Empty)),
            Some(Some(s)) => prop_assert_eq!(ours.map(|k| k.as_str().to_owned()), Ok(s)),
            _ => prop_assert!(ours.is_err(), "accepted {:?}", input),
        }
    }

    // Any bytes: never a panic; an accepted key is printable ASCII, 1 to
    // max characters.
    #[test]
    fn any_bytes_never_panic_and_keys_are_bounded(bytes in proptest::collection::vec(any::<u8>(), 0..300), max in 1usize..64) {
        if let Ok(key) = IdempotencyKey::parse(&bytes, max) {
            prop_assert!((1..=max).contains(&key.as_str().len()));
            prop_assert!(key.as_str().bytes().all(|b| (0x20..=0x7e).contains(&b)));
        }
    }
}
