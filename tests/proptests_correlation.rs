//! Property tests of correlation-ID validation through the public layer.
//!
//! The rule of the `correlation` module docs (no RFC defines
//! `x-request-id`): an incoming ID is accepted only if it matches
//! `^[A-Za-z0-9._:-]{1,128}$`; otherwise a fresh UUID (v7 by default,
//! RFC 9562 §5.7) replaces it and the rejected value is never reflected
//! (CWE-113).

use std::convert::Infallible;

use http::{HeaderValue, Request, Response};
use proptest::prelude::*;
use tower::{ServiceBuilder, ServiceExt};
use tower_edge::correlation::{CorrelationId, CorrelationIdLayer};

/// `^[A-Za-z0-9._:-]{1,128}$`, written without the crate's helper.
fn allowed(bytes: &[u8]) -> bool {
    (1..=128).contains(&bytes.len())
        && bytes.iter().all(|b| {
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-".contains(b)
        })
}

/// Sends `value` as `x-request-id`; returns (echoed header, the ID the
/// handler saw in its extensions, the header the handler saw).
fn round_trip(value: HeaderValue) -> (HeaderValue, CorrelationId, Option<HeaderValue>) {
    let service = ServiceBuilder::new()
        .layer(CorrelationIdLayer::new())
        .service_fn(|req: Request<()>| async move {
            let id = req.extensions().get::<CorrelationId>().cloned().unwrap();
            let seen = req.headers().get("x-request-id").cloned();
            let mut res = Response::new(());
            res.extensions_mut().insert((id, seen));
            Ok::<_, Infallible>(res)
        });
    let request = Request::builder()
        .header("x-request-id", value)
        .body(())
        .unwrap();
    let response = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(service.oneshot(request))
        .unwrap();
    let (id, seen) = response
        .extensions()
        .get::<(CorrelationId, Option<HeaderValue>)>()
        .cloned()
        .unwrap();
    (response.headers()["x-request-id"].clone(), id, seen)
}

fn check(bytes: &[u8]) -> Result<(), TestCaseError> {
    // Bytes a header value cannot hold never reach the layer.
    let Ok(value) = HeaderValue::from_bytes(bytes) else {
        return Ok(());
    };
    let (echoed, id, seen) = round_trip(value.clone());
    // The handler sees the final ID in the header and the extension alike.
    prop_assert_eq!(seen.as_ref(), Some(&echoed));
    prop_assert_eq!(id.header_value(), &echoed);
    if allowed(bytes) {
        prop_assert_eq!(&echoed, &value, "a valid ID must be kept");
    } else {
        prop_assert_ne!(&echoed, &value, "a rejected value was reflected");
        // The replacement is a UUID v7, not derived from the input.
        let uuid = uuid::Uuid::parse_str(echoed.to_str().unwrap()).unwrap();
        prop_assert_eq!(uuid.get_version_num(), 7);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // Arbitrary bytes: accepted iff the rule matches.
    #[test]
    fn arbitrary_bytes_are_accepted_iff_the_rule_matches(
        bytes in prop::collection::vec(any::<u8>(), 0..200),
    ) {
        check(&bytes)?;
    }

    // Values near the rule: valid IDs of 1 to 129 characters, with one
    // forbidden byte (CRLF, tab, space, quote, slash, non-ASCII...)
    // inserted or not.
    #[test]
    fn near_misses_are_rejected(
        id in "[A-Za-z0-9._:-]{1,129}",
        bad in prop::sample::select(vec![
            None, Some(b' '), Some(b'\t'), Some(b'/'), Some(b'"'), Some(b';'),
            Some(b'<'), Some(b'%'), Some(b'\\'), Some(0x80), Some(0xff), Some(b'\r'),
        ]),
        at in any::<prop::sample::Index>(),
    ) {
        let mut bytes = id.into_bytes();
        if let Some(bad) = bad {
            bytes.insert(at.index(bytes.len() + 1), bad);
        }
        check(&bytes)?;
    }
}

// A 10 KB value is rejected (the default rule stops at 128) and not
// reflected.
#[test]
fn ten_kilobytes_are_rejected() {
    check(&[b'a'; 10 * 1024]).unwrap();
    check(&[b'a'; 128]).unwrap();
}
