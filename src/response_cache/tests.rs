//! Tests of the response cache through its `tower::Service`.

mod aside;
mod invalidation;
mod stale;
mod storage;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::util::BoxCloneService;
use tower::{Layer, Service, ServiceExt};

use super::*;

type Inner = BoxCloneService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>;
type Svc = ResponseCache<Inner>;

/// The layer around a handler that counts its calls.
fn service<F, Fut>(layer: &ResponseCacheLayer, handler: F) -> (Svc, Arc<AtomicUsize>)
where
    F: Fn(Request<Full<Bytes>>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let inner = tower::service_fn(move |request| {
        counted.fetch_add(1, Ordering::SeqCst);
        let answer = handler(request);
        async move { Ok::<_, Infallible>(answer.await) }
    });
    (layer.layer(BoxCloneService::new(inner)), calls)
}

/// A handler answering 200 `body` with these fields.
fn answering(
    fields: &'static [(&'static str, &'static str)],
    body: &'static str,
) -> impl Fn(Request<Full<Bytes>>) -> std::future::Ready<Response<Full<Bytes>>> + Clone + Send + Sync
{
    move |_| {
        let mut response = Response::new(Full::from(body));
        for (name, value) in fields {
            response
                .headers_mut()
                .append(*name, http::HeaderValue::from_static(value));
        }
        std::future::ready(response)
    }
}

/// What a client gets: status, fields, whole body.
struct Got {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// The decision marker's reason, when the cache answered.
    reason: Option<crate::decision::Reason>,
}

impl Got {
    /// Our `Cache-Status` member, read with an RFC 9651 parser: its
    /// parameters (booleans as `true`, numbers and tokens as text).
    fn cache_status(&self) -> BTreeMap<String, String> {
        cache_status(&self.headers)
    }

    fn is_hit(&self) -> bool {
        self.cache_status().contains_key("hit")
    }
}

fn cache_status(headers: &HeaderMap) -> BTreeMap<String, String> {
    use sfv::{BareItem, ListEntry, Parser};
    let lines: Vec<_> = headers.get_all("cache-status").iter().collect();
    let last = lines.last().expect("a Cache-Status field");
    let list = Parser::new(last.as_bytes())
        .parse::<sfv::List>()
        .expect("an RFC 9651 List");
    let Some(ListEntry::Item(item)) = list.last() else {
        panic!("no member")
    };
    assert_eq!(
        item.bare_item.as_token().map(|t| t.as_str()),
        Some("tower-edge"),
        "RFC 9211 §2: the cache's name, a Token"
    );
    item.params
        .iter()
        .map(|(key, value)| {
            let text = match value {
                BareItem::Boolean(true) => "true".to_owned(),
                BareItem::Integer(i) => i64::from(*i).to_string(),
                BareItem::Token(t) => t.as_str().to_owned(),
                BareItem::String(s) => s.as_str().to_owned(),
                other => panic!("{other:?}"),
            };
            (key.as_str().to_owned(), text)
        })
        .collect()
}

async fn send(svc: &mut Svc, request: Request<Full<Bytes>>) -> Got {
    let response = svc.ready().await.unwrap().call(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let reason = parts
        .extensions
        .get::<crate::decision::Decision>()
        .map(|d| {
            assert_eq!(d.layer(), crate::decision::EdgeLayer::ResponseCache);
            d.reason()
        });
    Got {
        reason,
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

async fn get(svc: &mut Svc, uri: &str) -> Got {
    send(svc, Request::get(uri).body(Full::default()).unwrap()).await
}

async fn get_with(svc: &mut Svc, uri: &str, fields: &[(&str, &str)]) -> Got {
    let mut request = Request::get(uri).body(Full::default()).unwrap();
    for (name, value) in fields {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    send(svc, request).await
}

fn calls(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}

// RFC 9111 §4: a stored fresh response answers without the handler;
// RFC 9211 §2.1, §2.4: `hit` with `ttl`; §5.1: `Age`.
#[tokio::test(start_paused = true)]
async fn a_fresh_entry_answers_without_the_handler() {
    let layer = ResponseCacheLayer::new();
    let (mut svc, n) = service(&layer, answering(&[("cache-control", "max-age=60")], "[1]"));
    let first = get(&mut svc, "/products").await;
    let status = first.cache_status();
    assert_eq!(status.get("fwd").map(String::as_str), Some("uri-miss"));
    assert_eq!(status.get("fwd-status").map(String::as_str), Some("200"));
    assert_eq!(status.get("stored").map(String::as_str), Some("true"));
    tokio::time::advance(Duration::from_secs(10)).await;
    let second = get(&mut svc, "/products").await;
    assert_eq!(calls(&n), 1);
    assert_eq!(second.body, "[1]");
    assert_eq!(second.status, StatusCode::OK);
    assert!(second.is_hit());
    assert_eq!(second.cache_status()["ttl"], "50");
    assert_eq!(second.headers["age"], "10");
    // Metrics read the decision marker.
    assert_eq!(first.reason, None);
    assert_eq!(second.reason, Some(crate::decision::Reason::CacheHit));
    // Another path is another key.
    get(&mut svc, "/other").await;
    assert_eq!(calls(&n), 2);
    let stats = layer.handle().stats();
    assert_eq!((stats.hits, stats.misses, stats.stored), (1, 2, 2));
}

// One state per layer: every clone of the service (one per connection)
// sees the same entries.
#[tokio::test]
async fn clones_share_the_cache() {
    let layer = ResponseCacheLayer::new();
    let (mut svc, n) = service(&layer, answering(&[("cache-control", "max-age=60")], "x"));
    get(&mut svc, "/a").await;
    let mut clone = svc.clone();
    assert!(get(&mut clone, "/a").await.is_hit());
    let (mut other, _) = service(&layer, answering(&[], "y"));
    assert!(get(&mut other, "/a").await.is_hit());
    assert_eq!(calls(&n), 1);
}

// RFC 9110 §13.2.2 on a hit: 304 from the stored validators, without the
// handler; §15.4.5: no body, no representation metadata.
#[tokio::test]
async fn conditional_hits_answer_304_without_the_handler() {
    let layer = ResponseCacheLayer::new();
    let (mut svc, n) = service(
        &layer,
        answering(
            &[
                ("cache-control", "max-age=60"),
                ("content-type", "application/json"),
            ],
            "{\"id\":1}",
        ),
    );
    get(&mut svc, "/p").await;
    let hit = get(&mut svc, "/p").await;
    // The entry got the xxh3 tag the cache-headers layer would make.
    let etag = hit.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        etag,
        crate::cache_headers::ETag::from_content(b"{\"id\":1}").to_string()
    );
    let not_modified = get_with(&mut svc, "/p", &[("if-none-match", &etag)]).await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    assert_eq!(
        not_modified.reason,
        Some(crate::decision::Reason::NotModified)
    );
    assert!(not_modified.body.is_empty());
    assert!(not_modified.headers.get("content-type").is_none());
    assert_eq!(not_modified.headers["etag"], etag.as_str());
    assert!(not_modified.is_hit());
    let changed = get_with(&mut svc, "/p", &[("if-none-match", "\"other\"")]).await;
    assert_eq!(changed.status, StatusCode::OK);
    assert_eq!(changed.body, "{\"id\":1}");
    assert_eq!(calls(&n), 1);
    // HEAD is answered from GET's entry, without a body.
    let head = send(&mut svc, Request::head("/p").body(Full::default()).unwrap()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty() && head.is_hit());
    assert_eq!(calls(&n), 1);
}

// One fill per key: 100 concurrent misses run the handler once, the
// others wait and share its answer (RFC 9211 §2.6 `collapsed`).
#[tokio::test(start_paused = true)]
async fn concurrent_misses_run_the_handler_once() {
    let layer = ResponseCacheLayer::new();
    let (svc, n) = service(&layer, |_req| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Response::builder()
            .header("cache-control", "max-age=60")
            .body(Full::from("slow"))
            .unwrap()
    });
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let mut svc = svc.clone();
            tokio::spawn(async move { get(&mut svc, "/cold").await })
        })
        .collect();
    let mut collapsed = 0;
    for task in tasks {
        let got = task.await.unwrap();
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body, "slow");
        if got.cache_status().contains_key("collapsed") {
            assert_eq!(got.reason, Some(crate::decision::Reason::CacheCollapsed));
            assert_eq!(got.cache_status()["fwd-status"], "200");
            collapsed += 1;
        }
    }
    assert_eq!(calls(&n), 1);
    assert_eq!(collapsed, 99);
    assert_eq!(layer.handle().stats().collapsed, 99);
}

// The wait is bounded: past `lock_timeout` a waiting request runs the
// handler itself.
#[tokio::test(start_paused = true)]
async fn waiting_for_a_fill_is_bounded() {
    let layer = ResponseCacheLayer::builder()
        .lock_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let (svc, n) = service(&layer, |_req| async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Response::builder()
            .header("cache-control", "max-age=60")
            .body(Full::from("x"))
            .unwrap()
    });
    let mut first = svc.clone();
    let leader = tokio::spawn(async move { get(&mut first, "/slow").await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let mut second = svc.clone();
    let follower = tokio::spawn(async move { get(&mut second, "/slow").await });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(calls(&n), 2, "the follower gave up waiting after 1 s");
    leader.await.unwrap();
    let got = follower.await.unwrap();
    assert!(!got.cache_status().contains_key("collapsed"));
}

#[test]
fn bad_configuration_names_the_field() {
    let field = |builder: ResponseCacheLayerBuilder| builder.build().unwrap_err().field();
    let b = ResponseCacheLayer::builder;
    assert_eq!(field(b().max_entry_bytes(0)), "max_entry_bytes");
    assert_eq!(
        field(b().max_entry_bytes(10).max_memory_bytes(5)),
        "max_memory_bytes"
    );
    assert_eq!(field(b().lock_timeout(Duration::ZERO)), "lock_timeout");
    assert_eq!(field(b().origin_timeout(Duration::ZERO)), "origin_timeout");
    assert_eq!(field(b().name("9 lives")), "name");
    assert_eq!(
        field(b().targeted_field(http::header::CACHE_CONTROL)),
        "targeted_field"
    );
    assert_eq!(
        field(b().rule(ResponseCacheRule::new().path("nope"))),
        "rule.path"
    );
    assert_eq!(
        field(b().rule(ResponseCacheRule::new().bypass().per_subject())),
        "rule.bypass"
    );
    let many = (0..65).fold(b(), |b, _| b.rule(ResponseCacheRule::new()));
    assert_eq!(field(many), "rules");
    assert!(b().name("edge.cache").build().is_ok());
}
