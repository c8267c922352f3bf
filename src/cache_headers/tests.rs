//! Tests of the layer as a whole; each names the rule it checks.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCEPT_ENCODING, ACCEPT_RANGES, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    AGE, AUTHORIZATION, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LANGUAGE, CONTENT_LENGTH,
    CONTENT_LOCATION, CONTENT_RANGE, CONTENT_TYPE, DATE, ETAG, EXPIRES, IF_MATCH,
    IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_UNMODIFIED_SINCE, LAST_MODIFIED, LINK, RANGE, SET_COOKIE,
    STRICT_TRANSPORT_SECURITY, TRAILER, TRANSFER_ENCODING, VARY, X_CONTENT_TYPE_OPTIONS,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};

use super::*;

/// A body of several frames with an exact size hint, optionally failing at
/// the end.
struct Frames {
    frames: VecDeque<Bytes>,
    fail: bool,
}

impl Frames {
    fn new(frames: &[&'static str]) -> Self {
        Self {
            frames: frames
                .iter()
                .map(|f| Bytes::from_static(f.as_bytes()))
                .collect(),
            fail: false,
        }
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.frames.pop_front() {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            None if self.fail => {
                self.fail = false;
                Poll::Ready(Some(Err(std::io::Error::other("backend went away"))))
            }
            None => Poll::Ready(None),
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.frames.iter().map(|f| f.len() as u64).sum())
    }
}

/// A body that never yields a frame: proves the layer does not wait for
/// it. `exact` is the length it claims, if any.
struct Endless {
    exact: Option<u64>,
}

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Pending
    }

    fn size_hint(&self) -> SizeHint {
        self.exact
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

const JSON: &str = "{\"id\":42,\"name\":\"widget\"}";

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).body(Full::default()).unwrap()
}

fn with(mut req: Request<Full<Bytes>>, name: HeaderName, value: &str) -> Request<Full<Bytes>> {
    req.headers_mut()
        .append(name, HeaderValue::from_str(value).unwrap());
    req
}

/// Calls a layer around a handler that answers `status`, `headers` and
/// `body` to every request.
async fn call(
    layer: CacheHeadersLayer,
    status: StatusCode,
    headers: &[(HeaderName, &'static str)],
    body: &'static str,
    req: Request<Full<Bytes>>,
) -> (Response<ResponseBody<Full<Bytes>>>, Bytes) {
    let headers: Vec<_> = headers.to_vec();
    let res = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |_req: Request<Full<Bytes>>| {
            let headers = headers.clone();
            async move {
                let mut res = Response::new(Full::from(body));
                *res.status_mut() = status;
                for (name, value) in headers {
                    res.headers_mut()
                        .append(name, HeaderValue::from_static(value));
                }
                Ok::<_, Infallible>(res)
            }
        })
        .oneshot(req)
        .await
        .unwrap();
    let (parts, body) = res.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        Response::from_parts(parts, ResponseBody::full(bytes.clone())),
        bytes,
    )
}

async fn ok(req: Request<Full<Bytes>>) -> (Response<ResponseBody<Full<Bytes>>>, Bytes) {
    call(CacheHeadersLayer::new(), StatusCode::OK, &[], JSON, req).await
}

/// Polls a future once; the response head must be ready without waiting
/// for any body.
fn poll_once<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the response head did not arrive: the body is being buffered"),
    }
}

// RFC 9110 §8.8.3: a strong ETag for a 2xx GET; §13.1.2: a matching
// If-None-Match (weak comparison) on GET gets 304 without a body.
#[tokio::test]
async fn etag_is_generated_and_if_none_match_gives_304() {
    let (res, body) = ok(get("/products/1")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body, JSON);
    let etag = res.headers()[ETAG].to_str().unwrap().to_owned();
    assert_eq!(etag, ETag::from_content(JSON.as_bytes()).to_string());

    let (res, body) = ok(with(get("/products/1"), IF_NONE_MATCH, &etag)).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(res.headers()[ETAG], etag.as_str());

    // The weak form of the same tag matches too (weak comparison).
    let (res, _) = ok(with(
        get("/products/1"),
        IF_NONE_MATCH,
        &format!("W/{etag}"),
    ))
    .await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    // Another tag does not.
    let (res, body) = ok(with(get("/products/1"), IF_NONE_MATCH, "\"other\"")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body, JSON);
}

// RFC 9110 §15.4.5: a 304 keeps Cache-Control, Content-Location, Date, ETag,
// Expires, Vary (and Set-Cookie), and SHOULD NOT carry other representation
// metadata: Content-Type, Content-Encoding, Content-Language,
// Content-Length, Content-Range, Transfer-Encoding, Trailer and
// Content-Digest go, and Last-Modified is dropped when an ETag is present
// (it "might be useful if the response does not have an ETag field").
// Fields that are not representation metadata stay: without
// Access-Control-Allow-Origin a browser's CORS check fails on the 304.
#[tokio::test]
async fn not_modified_drops_representation_metadata_only() {
    let layer = CacheHeadersLayer::builder()
        .rule(CacheRule::new(
            CacheControl::new()
                .public()
                .max_age(Duration::from_secs(60)),
        ))
        .build()
        .unwrap();
    let dropped = [
        (CONTENT_TYPE, "application/json"),
        (CONTENT_ENCODING, "identity"),
        (CONTENT_LANGUAGE, "en"),
        (CONTENT_LENGTH, "26"),
        (CONTENT_RANGE, "bytes 0-25/26"),
        (TRANSFER_ENCODING, "chunked"),
        (TRAILER, "server-timing"),
        (HeaderName::from_static("content-digest"), "sha-256=:AAAA:"),
        (LAST_MODIFIED, "Sun, 06 Nov 1994 08:00:00 GMT"),
    ];
    let kept = [
        (CONTENT_LOCATION, "/products/1.json"),
        (DATE, "Sun, 06 Nov 1994 08:49:37 GMT"),
        (EXPIRES, "Sun, 06 Nov 1994 08:50:37 GMT"),
        (VARY, "accept-language"),
        (SET_COOKIE, "a=1"),
        (SET_COOKIE, "b=2"),
        (ETAG, "\"v1\""),
        (ACCESS_CONTROL_ALLOW_ORIGIN, "https://app.example"),
        (ACCESS_CONTROL_EXPOSE_HEADERS, "etag"),
        (LINK, "</p/2>; rel=\"next\""),
        (AGE, "5"),
        (HeaderName::from_static("server-timing"), "db;dur=3"),
        (STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (ACCEPT_RANGES, "bytes"),
        (HeaderName::from_static("x-custom"), "1"),
    ];
    let headers: Vec<_> = dropped.iter().chain(&kept).cloned().collect();
    let (res, body) = call(
        layer.clone(),
        StatusCode::OK,
        &headers,
        JSON,
        with(get("/p"), IF_NONE_MATCH, "\"v1\""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    let h = res.headers();
    for (name, _) in &dropped {
        assert!(h.get(name).is_none(), "{name} was kept");
    }
    for (name, value) in &kept {
        assert!(
            h.get_all(name).iter().any(|v| v == value),
            "{name}: {value} was dropped"
        );
    }
    let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
    names.sort_unstable();
    let mut expected: Vec<_> = kept.iter().map(|(n, _)| n.as_str()).collect();
    expected.push("cache-control");
    expected.sort_unstable();
    expected.dedup();
    assert_eq!(names, expected);
    assert_eq!(h[CACHE_CONTROL], "public, max-age=60");
    assert_eq!(h.get_all(SET_COOKIE).iter().count(), 2);

    // Without an ETag, If-Modified-Since decides and Last-Modified stays.
    let (res, _) = call(
        layer,
        StatusCode::OK,
        &[
            (LAST_MODIFIED, "Sun, 06 Nov 1994 08:00:00 GMT"),
            (CACHE_CONTROL, "no-cache"),
            (CONTENT_TYPE, "text/plain"),
        ],
        JSON,
        with(
            with(
                get("/p"),
                IF_MODIFIED_SINCE,
                "Sun, 06 Nov 1994 08:00:00 GMT",
            ),
            HeaderName::from_static("x-ignored"),
            "1",
        ),
    )
    .await;
    // The generated ETag is present, so Last-Modified goes here too; turn
    // tags off to see it kept.
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    let no_tags = CacheHeadersLayer::builder().etag(false).build().unwrap();
    let (res, _) = call(
        no_tags,
        StatusCode::OK,
        &[
            (LAST_MODIFIED, "Sun, 06 Nov 1994 08:00:00 GMT"),
            (CONTENT_TYPE, "text/plain"),
        ],
        JSON,
        with(
            get("/p"),
            IF_MODIFIED_SINCE,
            "Sun, 06 Nov 1994 08:00:00 GMT",
        ),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(
        res.headers()[LAST_MODIFIED],
        "Sun, 06 Nov 1994 08:00:00 GMT"
    );
    assert!(res.headers().get(CONTENT_TYPE).is_none());
}

// RFC 9110 §13.1: preconditions are evaluated only when the response
// without them would be 2xx (or 412): a 401, 404, 429 or 500 is never turned
// into a 304, whatever the validators; and no ETag is generated for them.
#[tokio::test]
async fn error_statuses_never_become_304_and_get_no_etag() {
    for status in [
        StatusCode::UNAUTHORIZED,
        StatusCode::NOT_FOUND,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::INTERNAL_SERVER_ERROR,
    ] {
        let req = with(
            with(get("/p"), IF_NONE_MATCH, "*"),
            IF_MODIFIED_SINCE,
            "Sun, 06 Nov 2094 08:49:37 GMT",
        );
        let (res, body) = call(
            CacheHeadersLayer::new(),
            status,
            &[(LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT")],
            "problem",
            req,
        )
        .await;
        assert_eq!(res.status(), status);
        assert_eq!(body, "problem");
        assert!(res.headers().get(ETAG).is_none(), "{status}");
        // RFC 6585 §4, RFC 9111 §5.2.2.5: 429 and auth errors are no-store
        // (errors default to it).
        assert_eq!(res.headers()[CACHE_CONTROL], "no-store", "{status}");
        // Even with the handler's own matching ETag.
        let (res, _) = call(
            CacheHeadersLayer::new(),
            status,
            &[(ETAG, "\"1\"")],
            "problem",
            with(get("/p"), IF_NONE_MATCH, "\"1\""),
        )
        .await;
        assert_eq!(res.status(), status);
    }
}

// RFC 6585 §4 (a 429 must not be stored; an auth error depends on the
// credentials sent): 429 and auth errors are `no-store` (RFC 9111
// §5.2.2.5), with no policy exception: not the handler's own `max-age`, not
// a public rule over 400..=499, not a custom error default. Other errors
// keep them.
#[tokio::test]
async fn auth_errors_and_429_are_always_no_store() {
    let public = CacheControl::new()
        .public()
        .max_age(Duration::from_secs(60));
    let by_rule = CacheHeadersLayer::builder()
        .rule(CacheRule::new(public.clone()).status_range(400..=499))
        .build()
        .unwrap();
    let replacing = CacheHeadersLayer::builder()
        .rule(
            CacheRule::new(public)
                .status_range(400..=499)
                .replace_handler_header(),
        )
        .build()
        .unwrap();
    let error_default = CacheHeadersLayer::builder()
        .error_cache_control(CacheControl::new().no_cache())
        .build()
        .unwrap();
    for status in [
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        StatusCode::TOO_MANY_REQUESTS,
    ] {
        let own: &[(HeaderName, &str)] = &[(CACHE_CONTROL, "max-age=60")];
        let cases = [
            (CacheHeadersLayer::new(), own),
            (by_rule.clone(), &[]),
            (by_rule.clone(), own),
            (replacing.clone(), own),
            (error_default.clone(), &[]),
        ];
        for (layer, headers) in cases {
            let req = with(get("/p"), AUTHORIZATION, "Bearer x");
            let (res, _) = call(layer, status, headers, "problem", req).await;
            assert_eq!(res.status(), status);
            let values: Vec<_> = res.headers().get_all(CACHE_CONTROL).iter().collect();
            assert_eq!(values, ["no-store"], "{status} {headers:?}");
        }
        // A handler's own no-store (with more) is left as it is.
        let (res, _) = call(
            by_rule.clone(),
            status,
            &[(CACHE_CONTROL, "private, no-store")],
            "problem",
            get("/p"),
        )
        .await;
        assert_eq!(res.headers()[CACHE_CONTROL], "private, no-store");
    }
    // Other 4xx follow the rule and the handler as before.
    let (res, _) = call(by_rule, StatusCode::NOT_FOUND, &[], "", get("/p")).await;
    assert_eq!(res.headers()[CACHE_CONTROL], "public, max-age=60");
    let (res, _) = call(
        CacheHeadersLayer::new(),
        StatusCode::NOT_FOUND,
        &[(CACHE_CONTROL, "max-age=60")],
        "",
        get("/p"),
    )
    .await;
    assert_eq!(res.headers()[CACHE_CONTROL], "max-age=60");
}

// RFC 9110 §8.8.3.1, §15.3.7: no ETag for 206, an existing ETag,
// `no-store`, non-GET methods; an existing ETag is kept and used for the
// 304 without hashing.
#[tokio::test]
async fn no_etag_where_it_does_not_belong() {
    let hashed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hashed);
    let layer = CacheHeadersLayer::builder()
        .make_etag(move |body: &[u8]| {
            counter.fetch_add(1, Ordering::SeqCst);
            ETag::from_content(body)
        })
        .build()
        .unwrap();
    let (res, _) = call(
        layer.clone(),
        StatusCode::PARTIAL_CONTENT,
        &[],
        JSON,
        get("/p"),
    )
    .await;
    assert!(res.headers().get(ETAG).is_none());
    let (res, _) = call(
        layer.clone(),
        StatusCode::OK,
        &[(CACHE_CONTROL, "private, no-store")],
        JSON,
        get("/p"),
    )
    .await;
    assert!(res.headers().get(ETAG).is_none());
    let post = Request::post("/p").body(Full::default()).unwrap();
    let (res, _) = call(layer.clone(), StatusCode::OK, &[], JSON, post).await;
    assert!(res.headers().get(ETAG).is_none());
    let (res, _) = call(
        layer.clone(),
        StatusCode::OK,
        &[(ETAG, "W/\"mine\"")],
        JSON,
        get("/p"),
    )
    .await;
    assert_eq!(res.headers()[ETAG], "W/\"mine\"");
    // The 304 path with the handler's own ETag does not hash.
    let (res, _) = call(
        layer.clone(),
        StatusCode::OK,
        &[(ETAG, "W/\"mine\"")],
        JSON,
        with(get("/p"), IF_NONE_MATCH, "W/\"mine\""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(hashed.load(Ordering::SeqCst), 0);
    // A plain 200 is hashed once.
    let _ = call(layer, StatusCode::OK, &[], JSON, get("/p")).await;
    assert_eq!(hashed.load(Ordering::SeqCst), 1);
}

// RFC 9110 §13.2.1, §13.2.2: preconditions are evaluated when the
// unconditional response would be 2xx, and steps 1-4 come before the Range
// step, so a 206 is evaluated against the handler's own validators: a stale
// If-Match gets 412 (not a piece of a changed representation), a current
// If-None-Match gets 304. RFC 9110 §15.3.7: a 206 still gets no generated
// tag (it would tag a part, not the selected representation).
#[tokio::test]
async fn partial_content_is_evaluated_but_never_tagged() {
    let range = |req| with(req, RANGE, "bytes=0-99");
    let partial = |headers: &'static [(HeaderName, &'static str)], req| {
        call(
            CacheHeadersLayer::new(),
            StatusCode::PARTIAL_CONTENT,
            headers,
            "{\"id\":42",
            req,
        )
    };
    let tagged: &[(HeaderName, &str)] = &[(ETAG, "\"new\""), (CONTENT_RANGE, "bytes 0-7/26")];

    let (res, body) = partial(tagged, range(with(get("/p"), IF_MATCH, "\"old\""))).await;
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    assert_ne!(body, "{\"id\":42");

    let (res, body) = partial(tagged, range(with(get("/p"), IF_NONE_MATCH, "\"new\""))).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert_eq!(res.headers()[ETAG], "\"new\"");
    assert!(res.headers().get(CONTENT_RANGE).is_none());

    // Conditions that hold let the 206 through, body and all.
    let (res, body) = partial(tagged, range(with(get("/p"), IF_MATCH, "\"new\""))).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, "{\"id\":42");
    let (res, _) = partial(tagged, range(with(get("/p"), IF_NONE_MATCH, "\"old\""))).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);

    // The date validators of the 206 count too.
    let dated: &[(HeaderName, &str)] = &[(LAST_MODIFIED, "Sun, 06 Nov 1994 08:49:37 GMT")];
    let req = with(
        get("/p"),
        IF_UNMODIFIED_SINCE,
        "Sun, 06 Nov 1994 08:49:36 GMT",
    );
    let (res, _) = partial(dated, range(req)).await;
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    let req = with(
        get("/p"),
        IF_MODIFIED_SINCE,
        "Sun, 06 Nov 1994 08:49:37 GMT",
    );
    let (res, _) = partial(dated, range(req)).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    // No tag is generated for a 206, conditional or not. Without a
    // validator of its own, a listed tag cannot match it (206 stands), and
    // `*` matches any current representation (RFC 9110 §13.1.2: 304).
    let (res, _) = partial(&[], range(get("/p"))).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert!(res.headers().get(ETAG).is_none());
    let (res, _) = partial(&[], range(with(get("/p"), IF_NONE_MATCH, "\"x\""))).await;
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert!(res.headers().get(ETAG).is_none());
    let (res, _) = partial(&[], range(with(get("/p"), IF_NONE_MATCH, "*"))).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(res.headers().get(ETAG).is_none());
}

// RFC 9110 §9.3.2 (HEAD: GET's header fields, no content): HEAD must not
// hash an empty body; a HEAD with the handler's own ETag is answered 304
// like a GET (RFC 9110 §13.1.2).
#[tokio::test]
async fn head_is_never_hashed_but_is_conditional() {
    let head = || Request::head("/p").body(Full::default()).unwrap();
    let hashed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hashed);
    let counting = CacheHeadersLayer::builder()
        .make_etag(move |body: &[u8]| {
            counter.fetch_add(1, Ordering::SeqCst);
            ETag::from_content(body)
        })
        .build()
        .unwrap();
    let (res, _) = call(counting, StatusCode::OK, &[], "", head()).await;
    assert!(res.headers().get(ETAG).is_none());
    assert_eq!(
        hashed.load(Ordering::SeqCst),
        0,
        "an empty HEAD body was hashed"
    );
    // A framework that hands the GET body to a HEAD response gets the GET's
    // tag (RFC 9110 §9.3.2: HEAD carries the GET's headers).
    let (res, _) = call(CacheHeadersLayer::new(), StatusCode::OK, &[], JSON, head()).await;
    let (get_res, _) = ok(get("/p")).await;
    assert_eq!(res.headers()[ETAG], get_res.headers()[ETAG]);
    let (res, body) = call(
        CacheHeadersLayer::new(),
        StatusCode::OK,
        &[(ETAG, "\"7\""), (CONTENT_LENGTH, "26")],
        "",
        with(head(), IF_NONE_MATCH, "\"7\""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(body.is_empty());
    assert!(res.headers().get(CONTENT_LENGTH).is_none());
}

// RFC 9110 §8.8.3.1 (an ETag only where changes can be reasonably
// determined): streaming / unknown-length bodies pass through unbuffered
// and untagged: with a body that never ends, the head arrives while the
// body is still pending.
#[test]
fn streaming_body_is_not_buffered() {
    let service = ServiceBuilder::new()
        .layer(CacheHeadersLayer::new())
        .service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Endless { exact: None }))
        });
    let res = poll_once(service.oneshot(with(get("/p"), IF_NONE_MATCH, "\"x\""))).unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().get(ETAG).is_none());
    let mut body = res.into_body();
    let poll = Pin::new(&mut body).poll_frame(&mut Context::from_waker(Waker::noop()));
    assert!(poll.is_pending(), "the body must still be streaming");
}

// RFC 9110 §8.8.3.1: over-cap bodies pass through unbuffered and untagged,
// even when their exact length is known.
#[tokio::test]
async fn over_cap_body_passes_through_untagged() {
    let service = ServiceBuilder::new()
        .layer(CacheHeadersLayer::new())
        .service_fn(|_req: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Endless {
                exact: Some(DEFAULT_MAX_ETAG_BODY as u64 + 1),
            }))
        });
    let res = poll_once(service.oneshot(get("/p"))).unwrap();
    assert!(res.headers().get(ETAG).is_none());

    // A real over-cap body arrives intact and untagged; at the cap it is
    // tagged.
    let small = CacheHeadersLayer::builder()
        .max_etag_body(JSON.len() - 1)
        .build()
        .unwrap();
    let (res, body) = call(small, StatusCode::OK, &[], JSON, get("/p")).await;
    assert!(res.headers().get(ETAG).is_none());
    assert_eq!(body, JSON);
    let exact = CacheHeadersLayer::builder()
        .max_etag_body(JSON.len())
        .build()
        .unwrap();
    let (res, _) = call(exact, StatusCode::OK, &[], JSON, get("/p")).await;
    assert!(res.headers().get(ETAG).is_some());
}

/// A body whose size hint changes once it has been polled: `before` until
/// the first frame, then `after` (exact, or unknown).
struct ShiftingHint {
    frames: VecDeque<Bytes>,
    polled: bool,
    before: u64,
    after: Option<u64>,
}

impl ShiftingHint {
    fn new(frames: &[&'static str], before: u64, after: Option<u64>) -> Self {
        Self {
            frames: frames
                .iter()
                .map(|f| Bytes::from_static(f.as_bytes()))
                .collect(),
            polled: false,
            before,
            after,
        }
    }
}

impl Body for ShiftingHint {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.polled = true;
        Poll::Ready(self.frames.pop_front().map(|d| Ok(Frame::data(d))))
    }

    fn size_hint(&self) -> SizeHint {
        match (self.polled, self.after) {
            (false, _) => SizeHint::with_exact(self.before),
            (true, Some(n)) => SizeHint::with_exact(n),
            (true, None) => SizeHint::default(),
        }
    }
}

// Buffered bodies have a byte cap: a body whose exact size hint
// grows after the layer started buffering it is never reserved for past the
// cap (this used to abort with "capacity overflow"); only the bytes it
// sends decide, so within the cap it is tagged as usual. A body that sends
// more than it promised, past the cap, breaks the `http_body::Body`
// contract: a 500 problem, not a panic.
#[tokio::test]
async fn a_size_hint_never_sizes_the_buffer_past_the_cap() {
    let cases = [
        // Small at first, then an exact hint of u64::MAX / 2, or u64::MAX.
        (
            ShiftingHint::new(&["{\"id\":", "42", "}"], 9, Some(u64::MAX / 2)),
            StatusCode::OK,
        ),
        (
            ShiftingHint::new(&["{\"id\":", "42", "}"], 9, Some(u64::MAX)),
            StatusCode::OK,
        ),
        // Promised 9 bytes, sends 12 (the cap is 10).
        (
            ShiftingHint::new(&["{\"id\":", "42", "}", "   "], 9, None),
            StatusCode::INTERNAL_SERVER_ERROR,
        ),
        // A hint that is no longer exact, on a body within the cap.
        (
            ShiftingHint::new(&["{\"id\":", "42}"], 9, None),
            StatusCode::OK,
        ),
    ];
    for (body, status) in cases {
        let body = std::sync::Mutex::new(Some(body));
        let service = ServiceBuilder::new()
            .layer(
                CacheHeadersLayer::builder()
                    .max_etag_body(10)
                    .build()
                    .unwrap(),
            )
            .service_fn(move |_req: Request<Full<Bytes>>| {
                let body = body.lock().unwrap().take().unwrap();
                async move { Ok::<_, Infallible>(Response::new(body)) }
            });
        let res = service.oneshot(get("/p")).await.unwrap();
        assert_eq!(res.status(), status);
        if status == StatusCode::OK {
            assert_eq!(
                res.headers()[ETAG],
                ETag::from_content(b"{\"id\":42}").to_string().as_str()
            );
        } else {
            assert_eq!(res.headers()[CONTENT_TYPE], "application/problem+json");
            assert!(res.headers().get(ETAG).is_none());
        }
    }
}

// Performance: frames are collected into one buffer; a single frame is
// reused without copying.
#[tokio::test]
async fn frames_are_joined_once_and_a_single_frame_is_not_copied() {
    let service = ServiceBuilder::new()
        .layer(CacheHeadersLayer::new())
        .service_fn(|req: Request<Full<Bytes>>| async move {
            let frames = if req.uri().path() == "/one" {
                Frames::new(&[JSON])
            } else {
                Frames::new(&["{\"id\":42,", "\"name\":", "\"widget\"}"])
            };
            Ok::<_, Infallible>(Response::new(frames))
        });
    let res = service.clone().oneshot(get("/many")).await.unwrap();
    assert_eq!(
        res.headers()[ETAG],
        ETag::from_content(JSON.as_bytes()).to_string().as_str()
    );
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), JSON);

    let res = service.oneshot(get("/one")).await.unwrap();
    let frame = res.into_body().frame().await.unwrap().unwrap();
    let data = frame.into_data().unwrap();
    assert_eq!(data.as_ptr(), JSON.as_ptr(), "the single frame was copied");
}

// A failing body is answered with a response (500 problem, RFC 9457),
// never a panic or a service error.
#[tokio::test]
async fn failing_body_is_a_500_problem() {
    let service = ServiceBuilder::new()
        .layer(CacheHeadersLayer::new())
        .service_fn(|_req: Request<Full<Bytes>>| async {
            let mut body = Frames::new(&["partial"]);
            body.fail = true;
            Ok::<_, Infallible>(Response::new(body))
        });
    let res = service.oneshot(get("/p")).await.unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()[CONTENT_TYPE], "application/problem+json");
}

// RFC 9110 §8.8.3.3: with Content-Encoding the tag differs per encoding
// (suffixed) and `Vary: Accept-Encoding` (RFC 9110 §12.5.5) is present,
// merged with the response's own Vary.
#[tokio::test]
async fn content_encoding_suffixes_the_tag_and_varies() {
    let (gzip, _) = call(
        CacheHeadersLayer::new(),
        StatusCode::OK,
        &[(CONTENT_ENCODING, "gzip"), (VARY, "Origin")],
        JSON,
        get("/p"),
    )
    .await;
    let (br, _) = call(
        CacheHeadersLayer::new(),
        StatusCode::OK,
        &[(CONTENT_ENCODING, "br"), (VARY, "accept-encoding")],
        JSON,
        get("/p"),
    )
    .await;
    let (identity, _) = ok(get("/p")).await;
    let tags = [&gzip, &br, &identity].map(|r| r.headers()[ETAG].to_str().unwrap().to_owned());
    assert!(tags[0].ends_with("-gzip\""), "{}", tags[0]);
    assert_ne!(tags[0], tags[1]);
    assert_ne!(tags[0], tags[2]);
    assert_ne!(tags[1], tags[2]);
    let vary: Vec<_> = gzip.headers().get_all(VARY).iter().collect();
    assert_eq!(vary, ["Origin", "accept-encoding"]);
    assert_eq!(br.headers().get_all(VARY).iter().count(), 1);
    assert!(identity.headers().get(VARY).is_none());
    // The suffixed tag revalidates.
    let (res, _) = call(
        CacheHeadersLayer::new(),
        StatusCode::OK,
        &[(CONTENT_ENCODING, "gzip")],
        JSON,
        with(get("/p"), IF_NONE_MATCH, &tags[0]),
    )
    .await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
}

// gRPC over HTTP/2 protocol spec (POST, status in trailers): the
// cache-headers layer leaves gRPC traffic untouched: no ETag, no
// Cache-Control, no 304.
#[tokio::test]
async fn grpc_is_untouched() {
    let grpc = || {
        with(
            with(
                with(get("/pkg.Svc/Method"), CONTENT_TYPE, "application/grpc"),
                AUTHORIZATION,
                "Bearer x",
            ),
            IF_NONE_MATCH,
            "*",
        )
    };
    // Over HTTP/1.1 the same request is not gRPC (gRPC needs HTTP/2): it
    // gets what any HTTP request gets, as the rejection module decides.
    let (res, _) = call(CacheHeadersLayer::new(), StatusCode::OK, &[], JSON, grpc()).await;
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert!(res.headers().get(CACHE_CONTROL).is_some());

    let mut req = grpc();
    *req.version_mut() = http::Version::HTTP_2;
    let (res, body) = call(CacheHeadersLayer::new(), StatusCode::OK, &[], JSON, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body, JSON);
    assert!(res.headers().get(ETAG).is_none());
    assert!(res.headers().get(CACHE_CONTROL).is_none());
}

// RFC 9111 §3.5: responses to requests with Authorization
// default to `private` unless a policy says otherwise.
#[tokio::test]
async fn authorization_defaults_to_private_unless_a_policy_says_otherwise() {
    let authed = || with(get("/p"), AUTHORIZATION, "Bearer t");
    let (res, _) = ok(authed()).await;
    assert_eq!(res.headers()[CACHE_CONTROL], "private");
    let (res, _) = ok(get("/p")).await;
    assert!(res.headers().get(CACHE_CONTROL).is_none());

    let layer = CacheHeadersLayer::builder()
        .rule(CacheRule::new(CacheControl::new().max_age(Duration::from_secs(60))).path("/p"))
        .rule(
            CacheRule::new(
                CacheControl::new()
                    .public()
                    .max_age(Duration::from_secs(60)),
            )
            .path("/shared"),
        )
        .build()
        .unwrap();
    let (res, _) = call(layer.clone(), StatusCode::OK, &[], JSON, authed()).await;
    assert_eq!(res.headers()[CACHE_CONTROL], "private, max-age=60");
    let (res, _) = call(layer.clone(), StatusCode::OK, &[], JSON, get("/p")).await;
    assert_eq!(res.headers()[CACHE_CONTROL], "max-age=60");
    let shared = with(get("/shared"), AUTHORIZATION, "Bearer t");
    let (res, _) = call(layer, StatusCode::OK, &[], JSON, shared).await;
    assert_eq!(res.headers()[CACHE_CONTROL], "public, max-age=60");
}

// Issue: policies match by path, method and status; the handler's own
// header wins unless configured otherwise; rendered tokens are unquoted.
#[tokio::test]
async fn rules_match_by_path_method_and_status() {
    let layer = CacheHeadersLayer::builder()
        .rule(
            CacheRule::new(
                CacheControl::new()
                    .public()
                    .max_age(Duration::from_secs(30)),
            )
            .path_pattern("/products/*")
            .statuses([StatusCode::NOT_FOUND]),
        )
        .rule(
            CacheRule::new(
                CacheControl::new()
                    .public()
                    .max_age(Duration::from_secs(300))
                    .stale_while_revalidate(Duration::from_secs(60)),
            )
            .path_pattern("/products/*")
            .vary(ACCEPT_ENCODING),
        )
        .rule(
            CacheRule::new(CacheControl::new().no_cache())
                .path_prefix("/forced")
                .replace_handler_header(),
        )
        .build()
        .unwrap();
    let (res, _) = call(layer.clone(), StatusCode::OK, &[], JSON, get("/products/1")).await;
    assert_eq!(
        res.headers()[CACHE_CONTROL],
        "public, max-age=300, stale-while-revalidate=60"
    );
    assert_eq!(res.headers()[VARY], "accept-encoding");
    let (res, _) = call(
        layer.clone(),
        StatusCode::NOT_FOUND,
        &[],
        JSON,
        get("/products/1"),
    )
    .await;
    assert_eq!(res.headers()[CACHE_CONTROL], "public, max-age=30");
    // Not GET/HEAD: no rule applies.
    let put = Request::put("/products/1").body(Full::default()).unwrap();
    let (res, _) = call(layer.clone(), StatusCode::OK, &[], JSON, put).await;
    assert!(res.headers().get(CACHE_CONTROL).is_none());
    // Other path.
    let (res, _) = call(layer.clone(), StatusCode::OK, &[], JSON, get("/users/1")).await;
    assert!(res.headers().get(CACHE_CONTROL).is_none());
    // The handler's own header wins...
    let own = [(CACHE_CONTROL, "max-age=5")];
    let (res, _) = call(
        layer.clone(),
        StatusCode::OK,
        &own,
        JSON,
        get("/products/1"),
    )
    .await;
    assert_eq!(res.headers()[CACHE_CONTROL], "max-age=5");
    // ...unless the rule replaces it.
    let (res, _) = call(layer.clone(), StatusCode::OK, &own, JSON, get("/forced/x")).await;
    assert_eq!(res.headers()[CACHE_CONTROL], "no-cache");
    // An error with its own Cache-Control keeps it.
    let (res, _) = call(layer, StatusCode::NOT_FOUND, &own, JSON, get("/x")).await;
    assert_eq!(res.headers()[CACHE_CONTROL], "max-age=5");
}

// RFC 9110 §13.1.1: If-Match false on a GET → 412 from the layer, a problem
// response with no-store.
#[tokio::test]
async fn failed_if_match_on_get_is_412() {
    let (res, body) = ok(with(get("/p"), IF_MATCH, "\"stale\"")).await;
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(res.headers()[CONTENT_TYPE], "application/problem+json");
    assert_eq!(res.headers()[CACHE_CONTROL], "no-store");
    assert!(!body.is_empty());
    // RFC 9110 §13.1.2: malformed If-None-Match never yields a 304.
    let tag = ETag::from_content(JSON.as_bytes()).to_string();
    let (res, body) = ok(with(get("/p"), IF_NONE_MATCH, tag.trim_matches('"'))).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body, JSON);
}

// The 412 goes through the configured `Rejections`, so a custom
// body format keeps the status and `no-store`.
#[tokio::test]
async fn custom_rejections_render_the_412() {
    use crate::rejection::{Problem, Rejections, RenderedBody};
    let rejections = Rejections::new(|p: &Problem| RenderedBody {
        content_type: HeaderValue::from_static("text/plain"),
        body: Bytes::from(p.title().to_owned()),
    });
    let layer = CacheHeadersLayer::builder()
        .rejections(rejections)
        .build()
        .unwrap();
    let (res, body) = call(
        layer,
        StatusCode::OK,
        &[],
        JSON,
        with(get("/p"), IF_MATCH, "\"stale\""),
    )
    .await;
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(res.headers()[CONTENT_TYPE], "text/plain");
    assert_eq!(res.headers()[CACHE_CONTROL], "no-store");
    assert_eq!(body, "Precondition Failed");
}

/// The handler of the If-Match tests: the stored product is at version 2.
async fn put_product(
    req: Request<Full<Bytes>>,
) -> Result<Response<ResponseBody<Full<Bytes>>>, Infallible> {
    let current = Representation::new().etag(ETag::strong("v2").unwrap());
    let preconditions = Preconditions::from_request(req.method(), req.headers());
    if let Err(stop) = preconditions.check(&current) {
        return Ok(stop.into_http_response());
    }
    let mut res = Response::new(ResponseBody::full("saved"));
    res.headers_mut()
        .insert(ETAG, HeaderValue::from_static("\"v3\""));
    Ok(res)
}

// RFC 9110 §13.1.1, §13.2.1: a PUT with a stale If-Match is refused with 412
// by the handler, before it writes, through the validator API.
#[tokio::test]
async fn if_match_put_is_412_through_the_validator_api() {
    let service = ServiceBuilder::new()
        .layer(CacheHeadersLayer::new())
        .service_fn(put_product);
    let put = |tag: &str| {
        Request::put("/products/1")
            .header(IF_MATCH, tag)
            .body(Full::default())
            .unwrap()
    };
    let res = service.clone().oneshot(put("\"v1\"")).await.unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(res.headers()[CACHE_CONTROL], "no-store");
    let res = service.clone().oneshot(put("\"v2\"")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // A weak tag never satisfies If-Match (strong comparison).
    let res = service.oneshot(put("W/\"v2\"")).await.unwrap();
    assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
}

// RFC 9110 §15.4.5: a handler's own 304 (validator API) gets the
// Cache-Control the 200 would have had, and no other representation header.
#[tokio::test]
async fn handler_304_gets_the_200_policy() {
    let layer = CacheHeadersLayer::builder()
        .rule(CacheRule::new(
            CacheControl::new()
                .public()
                .max_age(Duration::from_secs(60)),
        ))
        .build()
        .unwrap();
    let service =
        ServiceBuilder::new()
            .layer(layer)
            .service_fn(|req: Request<Full<Bytes>>| async move {
                let current = Representation::new().etag(ETag::strong("v2").unwrap());
                let res = match Preconditions::from_request(req.method(), req.headers())
                    .check(&current)
                {
                    Err(stop) => stop.into_http_response::<Full<Bytes>>(),
                    Ok(()) => Response::new(ResponseBody::full(JSON)),
                };
                let mut res = res;
                res.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok::<_, Infallible>(res)
            });
    let res = service
        .oneshot(with(get("/p"), IF_NONE_MATCH, "\"v2\""))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(res.headers()[CACHE_CONTROL], "public, max-age=60");
    assert_eq!(res.headers()[ETAG], "\"v2\"");
    assert!(res.headers().get(CONTENT_TYPE).is_none());
}

// Every clone of the service (one per connection) shares the
// layer's one configuration, hooks included.
#[tokio::test]
async fn clones_share_config() {
    let hashed = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hashed);
    let layer = CacheHeadersLayer::builder()
        .make_etag(move |body: &[u8]| {
            counter.fetch_add(1, Ordering::SeqCst);
            ETag::from_content(body)
        })
        .build()
        .unwrap();
    let handler = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::from(JSON)))
    });
    let a = layer.layer(handler);
    let b = a.clone();
    let c = layer.clone().layer(handler);
    assert!(Arc::ptr_eq(&a.config, &b.config));
    assert!(Arc::ptr_eq(&a.config, &c.config));
    for mut service in [a, b, c] {
        let _ = service
            .ready()
            .await
            .unwrap()
            .call(get("/p"))
            .await
            .unwrap();
    }
    assert_eq!(hashed.load(Ordering::SeqCst), 3);
}

#[test]
fn bad_configuration_fails_at_build_naming_the_field() {
    let err = CacheHeadersLayer::builder()
        .max_etag_body(0)
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "max_etag_body");
    let err = CacheHeadersLayer::builder()
        .error_cache_control(CacheControl::new())
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "error_cache_control");
    let mut builder = CacheHeadersLayer::builder();
    for _ in 0..65 {
        builder = builder.rule(CacheRule::new(CacheControl::new().no_cache()));
    }
    assert_eq!(builder.build().unwrap_err().field(), "rules");
    let err = CacheHeadersLayer::builder()
        .rule(CacheRule::new(CacheControl::new().no_cache()).methods([]))
        .build()
        .unwrap_err();
    assert_eq!(err.field(), "rule.methods");
}

#[tokio::test]
async fn service_builder_ext_adds_the_default_layer() {
    use crate::ServiceBuilderExt;
    let service =
        ServiceBuilder::new()
            .cache_headers()
            .service_fn(|_req: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::from(JSON)))
            });
    let res = service.oneshot(get("/p")).await.unwrap();
    assert!(res.headers().contains_key(ETAG));
}

#[cfg(feature = "axum")]
mod axum_extractor {
    use super::*;
    use axum::Router;
    use axum::body::Body as AxumBody;
    use axum::response::IntoResponse;
    use axum::routing::get as route_get;

    async fn handler(preconditions: Preconditions, method: Method) -> axum::response::Response {
        let current = Representation::new().etag(ETag::strong("v2").unwrap());
        if let Err(stop) = preconditions.check(&current) {
            return stop.into_response();
        }
        if method == Method::PUT {
            return StatusCode::NO_CONTENT.into_response();
        }
        ([(ETAG, "\"v2\"")], JSON).into_response()
    }

    // RFC 9110 §13.1.1: the axum extractor reads the request's conditional
    // headers; a stale If-Match PUT gets 412 and a matching If-None-Match GET
    // 304 (with the layer's policy).
    #[tokio::test]
    async fn axum_handler_uses_the_extractor() {
        let app = Router::new()
            .route("/products/{id}", route_get(handler).put(handler))
            .layer(
                CacheHeadersLayer::builder()
                    .rule(CacheRule::new(
                        CacheControl::new()
                            .public()
                            .max_age(Duration::from_secs(60)),
                    ))
                    .build()
                    .unwrap(),
            );
        let req = |method: Method, name: HeaderName, tag: &str| {
            Request::builder()
                .method(method)
                .uri("/products/1")
                .header(name, tag)
                .body(AxumBody::empty())
                .unwrap()
        };
        let res = app
            .clone()
            .oneshot(req(Method::PUT, IF_MATCH, "\"v1\""))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::PRECONDITION_FAILED);
        let res = app
            .clone()
            .oneshot(req(Method::PUT, IF_MATCH, "\"v2\""))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NO_CONTENT);
        let res = app
            .clone()
            .oneshot(req(Method::GET, IF_NONE_MATCH, "\"v2\""))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(res.headers()[CACHE_CONTROL], "public, max-age=60");
        let res = app
            .oneshot(req(Method::GET, IF_NONE_MATCH, "\"v1\""))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()[ETAG], "\"v2\"");
    }
}

mod properties {
    use super::*;
    use crate::cache_headers::conditional::{Current, evaluate};
    use crate::cache_headers::etag::{TagList, match_list};
    use proptest::prelude::*;

    fn opaque() -> impl Strategy<Value = String> {
        "[!#-~]{0,24}"
    }

    fn tag() -> impl Strategy<Value = ETag> {
        (any::<bool>(), opaque()).prop_map(|(weak, o)| {
            if weak {
                ETag::weak(&o).unwrap()
            } else {
                ETag::strong(&o).unwrap()
            }
        })
    }

    /// Optional whitespace and empty members between list members.
    fn separator() -> impl Strategy<Value = String> {
        "[ \t]{0,2},([ \t]{0,2},){0,2}[ \t]{0,2}"
    }

    fn headers_of(lines: &[String]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(IF_NONE_MATCH, HeaderValue::from_str(line).unwrap());
        }
        headers
    }

    /// Renders tags as a list spread over lines, with separators.
    fn render(tags: &[ETag], seps: &[String], split_every: usize) -> Vec<String> {
        let mut lines = vec![String::new()];
        for (i, tag) in tags.iter().enumerate() {
            if i > 0 && i % split_every == 0 {
                lines.push(String::new());
            }
            let line = lines.last_mut().unwrap();
            if !line.is_empty() {
                line.push_str(&seps[i % seps.len()]);
            }
            line.push_str(&tag.to_string());
        }
        lines
    }

    proptest! {
        // RFC 9110 §8.8.3: Display and FromStr round-trip.
        #[test]
        fn etag_round_trips(tag in tag()) {
            let parsed: ETag = tag.to_string().parse().unwrap();
            prop_assert_eq!(&parsed, &tag);
            prop_assert_eq!(parsed.is_weak(), tag.is_weak());
            prop_assert!(parsed.weak_eq(&tag));
        }

        // RFC 9110 §5.6.7: HTTP-dates round-trip at one-second granularity.
        #[test]
        fn http_date_round_trips(secs in 0u64..253_402_300_800) {
            let date = HttpDate::from_unix_seconds(secs).unwrap();
            let text = date.to_string();
            prop_assert_eq!(text.len(), 29);
            prop_assert_eq!(text.parse::<HttpDate>().unwrap(), date);
            prop_assert_eq!(HttpDate::from_header_value(&date.to_header_value()).unwrap(), date);
        }

        // RFC 9110 §13.1.2, §5.6.1: any rendering of a list (several lines,
        // empty members, whitespace) parses back to the same members: each
        // member matches, a tag outside the list does not.
        #[test]
        fn if_none_match_lists_round_trip(
            tags in prop::collection::vec(tag(), 1..6),
            seps in prop::collection::vec(separator(), 1..4),
            split_every in 1usize..4,
        ) {
            let headers = headers_of(&render(&tags, &seps, split_every));
            for tag in &tags {
                let found = match_list(headers.get_all(IF_NONE_MATCH), Some(tag.as_ref()), false);
                prop_assert_eq!(found, TagList::Tags { matched: true });
            }
            let absent = ETag::strong(&format!("{}~absent", tags.iter().map(|t| t.opaque()).collect::<String>())).unwrap();
            let found = match_list(headers.get_all(IF_NONE_MATCH), Some(absent.as_ref()), false);
            prop_assert_eq!(found, TagList::Tags { matched: false });
        }

        // RFC 9110 §8.8.3, §13.1.2: malformed values (unquoted, `w/`, `*`
        // mixed with tags, unterminated, missing comma) never produce a 304 —
        // even when the list also holds the current tag, which alone would
        // give 304.
        #[test]
        fn malformed_if_none_match_never_yields_304(
            tags in prop::collection::vec(tag(), 1..4),
            seps in prop::collection::vec(separator(), 1..3),
            junk in prop_oneof![
                "[a-zA-Z0-9]{1,8}",
                "w/\"[a-z0-9]{0,8}\"",
                Just("*".to_owned()),
                "\"[a-z0-9]{0,8}",
                "\"[a-z]{1,4}\" \"[a-z]{1,4}\"",
                "W/[a-z]{1,4}",
            ],
            at in 0usize..4,
            with_ims in any::<bool>(),
        ) {
            let mut members: Vec<String> = tags.iter().map(ToString::to_string).collect();
            members.insert(at.min(members.len()), junk);
            let line = members.join(&seps[0]);
            let mut headers = headers_of(&[line]);
            if with_ims {
                headers.insert(IF_MODIFIED_SINCE, HeaderValue::from_static("Fri, 31 Dec 9999 23:59:59 GMT"));
            }
            for current in &tags {
                let outcome = evaluate(&Method::GET, &headers, Current {
                    exists: true,
                    etag: Some(current.as_ref()),
                    last_modified: Some(HttpDate::from_unix_seconds(0).unwrap()),
                });
                prop_assert_ne!(outcome, Evaluation::NotModified);
            }
        }

        // Bad client input never panics, whatever the bytes.
        #[test]
        fn arbitrary_conditional_headers_never_panic(
            values in prop::collection::vec(prop::collection::vec(0x20u8..0x7f, 0..40), 0..4),
        ) {
            let mut headers = HeaderMap::new();
            for (i, value) in values.iter().enumerate() {
                let name = [IF_MATCH, IF_NONE_MATCH, IF_MODIFIED_SINCE, http::header::IF_UNMODIFIED_SINCE][i % 4].clone();
                headers.append(name, HeaderValue::from_bytes(value).unwrap());
            }
            let tag = ETag::strong("x").unwrap();
            for method in [Method::GET, Method::PUT] {
                let _ = evaluate(&method, &headers, Current {
                    exists: true,
                    etag: Some(tag.as_ref()),
                    last_modified: None,
                });
            }
        }
    }
}
