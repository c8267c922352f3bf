use super::*;
use crate::rejection::is_grpc;
use http::HeaderValue;

fn pre(method: Method, pairs: &[(&'static str, &'static str)]) -> Preconditions {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(*name, HeaderValue::from_static(value));
    }
    Preconditions::from_request(&method, &headers)
}

// With few fields or many: every conditional value is kept, in order,
// and nothing else.
#[test]
fn from_request_keeps_the_same_fields_with_few_or_many_names() {
    for extra in [0, 20] {
        let mut headers = HeaderMap::new();
        for i in 0..extra {
            let name = http::HeaderName::try_from(format!("x-extra-{i}")).unwrap();
            headers.insert(name, HeaderValue::from_static("v"));
        }
        headers.append("if-none-match", HeaderValue::from_static("\"a\""));
        headers.append("accept", HeaderValue::from_static("*/*"));
        headers.append("if-none-match", HeaderValue::from_static("\"b\""));
        headers.append("if-modified-since", HeaderValue::from_static("x"));
        let pre = Preconditions::from_request(&Method::GET, &headers);
        assert!(pre.is_conditional());
        assert_eq!(pre.headers().len(), 3, "extra fields: {extra}");
        let tags: Vec<_> = pre.headers().get_all(IF_NONE_MATCH).iter().collect();
        assert_eq!(tags, ["\"a\"", "\"b\""]);
        assert_eq!(pre.headers()[IF_MODIFIED_SINCE], "x");
        assert!(!pre.headers().contains_key("accept"));
    }
}

// `scan` (the layer's one pass) agrees with the lookups it replaces,
// with few fields and with many.
#[test]
fn scan_agrees_with_lookups() {
    let cases: [&[(&'static str, &'static str)]; 5] = [
        &[
            ("content-type", "application/grpc+proto"),
            ("if-none-match", "\"a\""),
        ],
        // Only the first Content-Type counts, as with `get`.
        &[
            ("content-type", "text/plain"),
            ("content-type", "application/grpc"),
        ],
        &[
            ("authorization", "Bearer x"),
            ("if-match", "\"a\""),
            ("accept", "*/*"),
        ],
        &[("if-none-match", "\"a\""), ("if-none-match", "\"b\"")],
        &[],
    ];
    for pairs in cases {
        for extra in [0, 20] {
            let mut headers = HeaderMap::new();
            for i in 0..extra {
                let name = http::HeaderName::try_from(format!("x-extra-{i}")).unwrap();
                headers.insert(name, HeaderValue::from_static("v"));
            }
            for (name, value) in pairs {
                headers.append(*name, HeaderValue::from_static(value));
            }
            for conditional in [false, true] {
                let scanned =
                    Preconditions::scan(&Method::GET, Version::HTTP_2, &headers, conditional);
                if is_grpc(Version::HTTP_2, &headers) {
                    assert!(scanned.is_none(), "{pairs:?}");
                    continue;
                }
                let (pre, authorized) = scanned.expect("not gRPC");
                assert_eq!(authorized, headers.contains_key(AUTHORIZATION));
                let expected = if conditional {
                    Preconditions::from_request(&Method::GET, &headers)
                } else {
                    Preconditions::from_request(&Method::GET, &HeaderMap::new())
                };
                assert_eq!(pre.headers(), expected.headers(), "{pairs:?} {extra}");
            }
        }
    }
}

fn rep(etag: &str) -> Representation {
    Representation::new().etag(etag.parse().unwrap())
}

fn date(s: &str) -> HttpDate {
    s.parse().unwrap()
}

const T0: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const T1: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

use Evaluation::*;

// RFC 9110 §13.1.1: If-Match uses the strong comparison; false → 412.
#[test]
fn if_match_is_strong() {
    let p = pre(Method::PUT, &[("if-match", "\"1\"")]);
    assert_eq!(p.evaluate(&rep("\"1\"")), Proceed);
    assert_eq!(p.evaluate(&rep("W/\"1\"")), PreconditionFailed);
    assert_eq!(p.evaluate(&rep("\"2\"")), PreconditionFailed);
    let p = pre(Method::PUT, &[("if-match", "W/\"1\"")]);
    assert_eq!(p.evaluate(&rep("W/\"1\"")), PreconditionFailed);
}

// RFC 9110 §13.1.2: If-None-Match uses the weak comparison; false → 304
// for GET/HEAD, 412 for other methods.
#[test]
fn if_none_match_is_weak_and_method_dependent() {
    for method in [Method::GET, Method::HEAD] {
        let p = pre(method, &[("if-none-match", "W/\"1\"")]);
        assert_eq!(p.evaluate(&rep("\"1\"")), NotModified);
        assert_eq!(p.evaluate(&rep("W/\"1\"")), NotModified);
        assert_eq!(p.evaluate(&rep("\"2\"")), Proceed);
    }
    let p = pre(Method::POST, &[("if-none-match", "\"1\"")]);
    assert_eq!(p.evaluate(&rep("\"1\"")), PreconditionFailed);
    assert_eq!(p.evaluate(&rep("\"2\"")), Proceed);
}

// RFC 9110 §13.1.1, §13.1.2: `*` matches when a current representation
// exists.
#[test]
fn star_matches_an_existing_representation_only() {
    let p = pre(Method::PUT, &[("if-match", "*")]);
    assert_eq!(p.evaluate(&Representation::new()), Proceed);
    assert_eq!(p.evaluate(&Representation::missing()), PreconditionFailed);
    let p = pre(Method::PUT, &[("if-none-match", "*")]);
    assert_eq!(p.evaluate(&Representation::new()), PreconditionFailed);
    assert_eq!(p.evaluate(&Representation::missing()), Proceed);
    let p = pre(Method::GET, &[("if-none-match", "*")]);
    assert_eq!(p.evaluate(&Representation::new()), NotModified);
}

// RFC 9110 §13.2.2: the order. If-Match before If-None-Match (a failed
// If-Match is 412 even when If-None-Match would give 304);
// If-Unmodified-Since only without If-Match; If-Modified-Since only
// without If-None-Match.
#[test]
fn evaluation_order() {
    let current = rep("\"1\"").last_modified(date(T0));
    // Step 1 decides before step 3.
    let p = pre(
        Method::GET,
        &[("if-match", "\"2\""), ("if-none-match", "\"1\"")],
    );
    assert_eq!(p.evaluate(&current), PreconditionFailed);
    // Step 1 true, step 3 false → 304.
    let p = pre(
        Method::GET,
        &[("if-match", "\"1\""), ("if-none-match", "\"1\"")],
    );
    assert_eq!(p.evaluate(&current), NotModified);
    // If-Unmodified-Since (false here) is ignored when If-Match is present.
    let p = pre(
        Method::PUT,
        &[
            ("if-match", "\"1\""),
            ("if-unmodified-since", "Sun, 06 Nov 1994 08:49:36 GMT"),
        ],
    );
    assert_eq!(p.evaluate(&current), Proceed);
    // ...and decides when it is alone.
    let p = pre(
        Method::PUT,
        &[("if-unmodified-since", "Sun, 06 Nov 1994 08:49:36 GMT")],
    );
    assert_eq!(p.evaluate(&current), PreconditionFailed);
    // If-Modified-Since (true → 304 alone) is ignored when If-None-Match
    // is present and does not match.
    let p = pre(
        Method::GET,
        &[("if-none-match", "\"other\""), ("if-modified-since", T1)],
    );
    assert_eq!(p.evaluate(&current), Proceed);
    let p = pre(Method::GET, &[("if-modified-since", T1)]);
    assert_eq!(p.evaluate(&current), NotModified);
    // Step 2 false before step 4.
    let p = pre(
        Method::GET,
        &[
            ("if-unmodified-since", "Sun, 06 Nov 1994 08:49:36 GMT"),
            ("if-modified-since", T1),
        ],
    );
    assert_eq!(p.evaluate(&current), PreconditionFailed);
}

// RFC 9110 §13.1.3, §13.1.4: invalid HTTP-date → the field is ignored;
// one-second granularity; a list of dates is invalid.
#[test]
fn date_validators() {
    let current = Representation::new().last_modified(date(T0));
    // Equal second → not modified; one second later → modified.
    assert_eq!(
        pre(Method::GET, &[("if-modified-since", T0)]).evaluate(&current),
        NotModified
    );
    let later = Representation::new().last_modified(date(T1));
    assert_eq!(
        pre(Method::GET, &[("if-modified-since", T0)]).evaluate(&later),
        Proceed
    );
    // Invalid dates are ignored, not treated as "modified" or "failed".
    for bad in ["yesterday", "Sun, 06 Nov 1994 08:49:37", "0"] {
        assert_eq!(
            pre(Method::GET, &[("if-modified-since", bad)]).evaluate(&current),
            Proceed
        );
        assert_eq!(
            pre(Method::PUT, &[("if-unmodified-since", bad)]).evaluate(&later),
            Proceed
        );
    }
    // Two lines of If-Modified-Since are a list: ignored.
    assert_eq!(
        pre(
            Method::GET,
            &[("if-modified-since", T0), ("if-modified-since", T1)]
        )
        .evaluate(&current),
        Proceed
    );
    // If-Modified-Since only for GET and HEAD.
    assert_eq!(
        pre(Method::POST, &[("if-modified-since", T1)]).evaluate(&current),
        Proceed
    );
    // Unmodified since: equal → holds; earlier → 412.
    assert_eq!(
        pre(Method::PUT, &[("if-unmodified-since", T0)]).evaluate(&current),
        Proceed
    );
    assert_eq!(
        pre(Method::PUT, &[("if-unmodified-since", T0)]).evaluate(&later),
        PreconditionFailed
    );
    // No Last-Modified: date conditions cannot fail or match.
    assert_eq!(
        pre(Method::GET, &[("if-modified-since", T1)]).evaluate(&Representation::new()),
        Proceed
    );
}

// RFC 9110 §13.2.1: preconditions are ignored for CONNECT, OPTIONS, TRACE.
#[test]
fn ignored_for_connect_options_trace() {
    for method in [Method::CONNECT, Method::OPTIONS, Method::TRACE] {
        let p = pre(
            method.clone(),
            &[("if-match", "\"nope\""), ("if-none-match", "*")],
        );
        assert_eq!(p.evaluate(&rep("\"1\"")), Proceed, "{method}");
    }
}

// RFC 9110 §8.8.3, §13.1.2: malformed values (unquoted, `w/`, `*` mixed
// with tags) never produce a 304; a malformed If-Match fails safe with
// 412 (§13.1.1).
#[test]
fn malformed_never_yields_304() {
    for bad in ["1", "w/\"1\"", "*, \"1\"", "\"1\" \"1\"", "\"1"] {
        let p = pre(Method::GET, &[("if-none-match", bad)]);
        assert_eq!(p.evaluate(&rep("\"1\"")), Proceed, "{bad}");
        // Present-but-malformed If-None-Match still disables IMS.
        let p = pre(
            Method::GET,
            &[("if-none-match", bad), ("if-modified-since", T1)],
        );
        assert_eq!(
            p.evaluate(&rep("\"1\"").last_modified(date(T0))),
            Proceed,
            "{bad}"
        );
        let p = pre(Method::PUT, &[("if-match", bad)]);
        assert_eq!(p.evaluate(&rep("\"1\"")), PreconditionFailed, "{bad}");
    }
}

// RFC 9110 §5.3/§5.6.1: lists over several lines, empty
// members, OWS, a comma inside quotes belongs to the tag.
#[test]
fn multi_line_if_none_match_with_quoted_comma() {
    let p = pre(
        Method::GET,
        &[
            ("if-none-match", "\"a\", ,"),
            ("if-none-match", " \"b,c\" "),
        ],
    );
    assert_eq!(p.evaluate(&rep("\"b,c\"")), NotModified);
    assert_eq!(p.evaluate(&rep("\"b\"")), Proceed);
    assert_eq!(p.evaluate(&rep("\"c\"")), Proceed);
}

// RFC 9110 §15.4.5 (SHOULD NOT send other representation metadata;
// Last-Modified "might be useful if the response does not have an ETag").
#[test]
fn conditional_response_304_carries_validator_412_is_a_problem() {
    let p = pre(Method::GET, &[("if-none-match", "\"1\"")]);
    let current = rep("\"1\"").last_modified(date(T0));
    let r = p.check(&current).unwrap_err();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let res = r.into_http_response::<http_body_util::Empty<bytes::Bytes>>();
    assert_eq!(res.headers()[ETAG], "\"1\"");
    assert!(res.headers().get(LAST_MODIFIED).is_none());
    use http_body::Body as _;
    assert!(res.body().is_end_stream());

    let p = pre(Method::GET, &[("if-modified-since", T0)]);
    let current = Representation::new().last_modified(date(T0));
    let res = p
        .check(&current)
        .unwrap_err()
        .into_http_response::<http_body_util::Empty<bytes::Bytes>>();
    assert_eq!(res.headers()[LAST_MODIFIED], T0);

    let p = pre(Method::DELETE, &[("if-match", "\"old\"")]);
    let res = p
        .check(&rep("\"new\""))
        .unwrap_err()
        .into_http_response::<http_body_util::Empty<bytes::Bytes>>();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    assert!(pre(Method::GET, &[]).check(&rep("\"1\"")).is_ok());
    assert!(!pre(Method::GET, &[]).is_conditional());
}
