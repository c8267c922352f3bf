use super::*;
use http::HeaderMap;
use http::header::{ACCEPT_ENCODING, ACCEPT_LANGUAGE, VARY};

// RFC 9111 §5.2, §1.2.2: Cache-Control tokens are unquoted
// delta-seconds (`max-age=300`).
#[test]
fn directives_render_unquoted_in_a_stable_order() {
    let cc = CacheControl::new()
        .immutable()
        .stale_if_error(Duration::from_secs(600))
        .stale_while_revalidate(Duration::from_millis(30_900))
        .s_maxage(Duration::from_secs(120))
        .max_age(Duration::from_secs(300))
        .public();
    assert_eq!(
        cc.render("x").unwrap(),
        "public, max-age=300, s-maxage=120, immutable, stale-while-revalidate=30, stale-if-error=600"
    );
    assert_eq!(
        CacheControl::new().no_cache().must_revalidate().to_string(),
        "no-cache, must-revalidate"
    );
    assert!(!cc.to_string().contains('"'));
}

#[test]
fn contradictions_fail_at_build_naming_the_field() {
    for bad in [
        CacheControl::new(),
        CacheControl::new().public().private(),
        CacheControl::new()
            .private()
            .s_maxage(Duration::from_secs(1)),
        CacheControl::new()
            .no_store()
            .max_age(Duration::from_secs(1)),
        CacheControl::new().no_store().public(),
    ] {
        let err = bad.render("rule.cache_control").unwrap_err();
        assert_eq!(err.field(), "rule.cache_control", "{bad:?}");
    }
    let err = CacheRule::new(CacheControl::new().no_cache())
        .path_pattern("/a/**/b")
        .compile(&CacheControl::new().private())
        .unwrap_err();
    assert_eq!(err.field(), "rule.path");
    let err = CacheRule::new(CacheControl::new().no_cache())
        .path_prefix("static")
        .compile(&CacheControl::new().private())
        .unwrap_err();
    assert_eq!(err.field(), "rule.path");
}

#[test]
fn paths_match_by_exact_prefix_and_pattern() {
    let prefix = PathMatch::Prefix("/static".into());
    assert!(prefix.matches("/static"));
    assert!(prefix.matches("/static/app.js"));
    assert!(!prefix.matches("/statistics"));
    let exact = PathMatch::Exact("/a".into());
    assert!(exact.matches("/a") && !exact.matches("/a/b"));
    let one = PathMatch::Pattern("/products/*".into());
    assert!(one.matches("/products/42"));
    assert!(!one.matches("/products"));
    assert!(!one.matches("/products/"));
    assert!(!one.matches("/products/42/reviews"));
    let mid = PathMatch::Pattern("/users/*/avatar".into());
    assert!(mid.matches("/users/7/avatar") && !mid.matches("/users/7/name"));
    let rest = PathMatch::Pattern("/docs/**".into());
    assert!(rest.matches("/docs") && rest.matches("/docs/a/b/c"));
    assert!(!rest.matches("/doc"));
}

// RFC 9111 §3.5: a rule without public/private becomes private for
// requests with Authorization; an explicit public stays.
#[test]
fn authorized_variant_adds_private_unless_the_rule_decides() {
    let private = CacheControl::new().private();
    let rule = CacheRule::new(CacheControl::new().max_age(Duration::from_secs(60)))
        .compile(&private)
        .unwrap();
    assert_eq!(rule.value, "max-age=60");
    assert_eq!(rule.authorized, "private, max-age=60");
    let rule = CacheRule::new(
        CacheControl::new()
            .public()
            .max_age(Duration::from_secs(60)),
    )
    .compile(&private)
    .unwrap();
    assert_eq!(rule.authorized, "public, max-age=60");
}

// RFC 9110 §12.5.5: Vary is a list; merging never duplicates a member
// (compared case-insensitively) and `*` already covers everything.
#[test]
fn vary_is_merged_never_duplicated() {
    let mut headers = HeaderMap::new();
    headers.insert(VARY, HeaderValue::from_static("accept-encoding, Origin"));
    merge_vary(&mut headers, &[ACCEPT_ENCODING, ACCEPT_LANGUAGE], None);
    let all: Vec<_> = headers.get_all(VARY).iter().collect();
    assert_eq!(all, ["accept-encoding, Origin", "accept-language"]);
    merge_vary(&mut headers, &[ACCEPT_LANGUAGE], None);
    assert_eq!(headers.get_all(VARY).iter().count(), 2);

    let mut star = HeaderMap::new();
    star.insert(VARY, HeaderValue::from_static("*"));
    merge_vary(&mut star, &[ACCEPT_ENCODING], None);
    assert_eq!(star.get_all(VARY).iter().count(), 1);

    let mut empty = HeaderMap::new();
    merge_vary(&mut empty, &[ACCEPT_ENCODING, ACCEPT_LANGUAGE], None);
    assert_eq!(empty[VARY], "accept-encoding, accept-language");
}

#[test]
fn no_store_is_found_in_any_case_and_position() {
    let v = |s: &'static str| HeaderValue::from_static(s);
    assert!(has_no_store([&v("private, No-Store")]));
    assert!(has_no_store([&v("max-age=0"), &v("no-store")]));
    assert!(!has_no_store([&v("no-cache, max-age=0")]));
    assert!(!has_no_store([&v("x-no-store-ish")]));
    // RFC 9110 §5.6.4: a quoted argument is not a directive.
    assert!(!has_no_store([&v(r#"private="a,no-store,b""#)]));
    assert!(has_no_store([&v(r#"private="a,no-store,b", no-store"#)]));
}

// RFC 9111 §5.2.2.5: a 401 is always `no-store`. The handler's
// field-qualified `private` names `no-store` only inside its quoted
// argument (RFC 9110 §5.6.4), so the response is not `no-store` yet and
// the layer makes it so.
#[tokio::test]
async fn a_quoted_no_store_does_not_keep_a_401_storable() {
    use bytes::Bytes;
    use http::{Request, Response};
    use http_body_util::Full;
    use tower::{Layer, ServiceExt, service_fn};

    use crate::cache_headers::CacheHeadersLayer;

    let handler = service_fn(|_: Request<Full<Bytes>>| async {
        let mut res = Response::new(Full::new(Bytes::from_static(b"problem")));
        *res.status_mut() = StatusCode::UNAUTHORIZED;
        res.headers_mut().insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static(r#"private="a,no-store,b""#),
        );
        Ok::<_, std::convert::Infallible>(res)
    });
    let res = CacheHeadersLayer::new()
        .layer(handler)
        .oneshot(Request::new(Full::new(Bytes::new())))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let values: Vec<_> = res
        .headers()
        .get_all(http::header::CACHE_CONTROL)
        .iter()
        .collect();
    assert_eq!(values, ["no-store"]);
}
