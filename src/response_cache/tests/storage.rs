//! What is stored, under which key, for how long.

use super::*;

/// Two GETs of `/r` with the handler answering `fields`: how many times
/// the handler ran.
async fn runs_twice_with(fields: &'static [(&'static str, &'static str)]) -> usize {
    let layer = ResponseCacheLayer::new();
    let (mut svc, n) = service(&layer, answering(fields, "body"));
    get(&mut svc, "/r").await;
    let second = get(&mut svc, "/r").await;
    if calls(&n) == 1 {
        assert!(second.is_hit());
    }
    calls(&n)
}

// RFC 9111 §3: `no-store` (§5.2.2.5), `private` (§5.2.2.7), `Set-Cookie`
// (a per-client answer) and `Vary: *` (§4.1) are never stored; nor is a
// response without explicit freshness.
#[tokio::test]
async fn unshareable_responses_are_never_stored() {
    for fields in [
        &[("cache-control", "no-store, max-age=60")][..],
        &[("cache-control", "private, max-age=60")],
        &[("cache-control", "Private=\"x\", max-age=60")],
        &[
            ("cache-control", "public, max-age=60"),
            ("set-cookie", "a=1"),
        ],
        &[("cache-control", "max-age=60"), ("vary", "accept, *")],
        &[("cache-control", "public")],
        &[],
        // §4.2.1: a directive given twice makes the response stale.
        &[("cache-control", "max-age=60, max-age=30")],
        // A targeted field never overrides `no-store` or `private`.
        &[
            ("cache-control", "private"),
            ("edge-cache-control", "max-age=30"),
        ],
        &[
            ("cache-control", "no-store"),
            ("edge-cache-control", "max-age=30"),
        ],
    ] {
        assert_eq!(runs_twice_with(fields).await, 2, "{fields:?}");
    }
    assert_eq!(runs_twice_with(&[("cache-control", "s-maxage=5")]).await, 1);
    assert_eq!(
        runs_twice_with(&[("edge-cache-control", "max-age=5")]).await,
        1
    );
}

// Never a 401, 403, 429 or 503 stored (nor 206, nor 500): only the
// statuses RFC 9110 §15.1 calls heuristically cacheable.
#[tokio::test]
async fn error_and_partial_statuses_are_never_stored() {
    for status in [401u16, 403, 429, 503, 500, 206] {
        let layer = ResponseCacheLayer::new();
        let (mut svc, n) = service(&layer, move |_| {
            std::future::ready(
                Response::builder()
                    .status(status)
                    .header("cache-control", "public, max-age=60")
                    .body(Full::from("no"))
                    .unwrap(),
            )
        });
        get(&mut svc, "/e").await;
        let second = get(&mut svc, "/e").await;
        assert_eq!(calls(&n), 2, "{status}");
        assert_eq!(second.status.as_u16(), status);
        assert!(!second.cache_status().contains_key("stored"));
    }
    // A 404 with explicit freshness is stored.
    let layer = ResponseCacheLayer::new();
    let (mut svc, n) = service(&layer, |_| {
        std::future::ready(
            Response::builder()
                .status(404)
                .header("cache-control", "max-age=60")
                .body(Full::from("gone"))
                .unwrap(),
        )
    });
    get(&mut svc, "/missing").await;
    assert_eq!(get(&mut svc, "/missing").await.status, 404);
    assert_eq!(calls(&n), 1);
}

// RFC 9111 §4.2.1: `s-maxage` over `max-age` over `Expires`; RFC 9213
// §2.2: a valid targeted field replaces them for this cache, and is not
// sent on; an invalid one is ignored (§2.1).
#[tokio::test(start_paused = true)]
async fn freshness_precedence_and_the_targeted_field() {
    let ttl = async |fields: &'static [(&'static str, &'static str)]| {
        let layer = ResponseCacheLayer::new();
        let (mut svc, _) = service(&layer, answering(fields, "x"));
        let first = get(&mut svc, "/f").await;
        assert!(first.headers.get("edge-cache-control").is_none());
        let hit = get(&mut svc, "/f").await;
        assert!(hit.headers.get("edge-cache-control").is_none());
        hit.cache_status()
            .get("ttl")
            .map(|t| t.parse::<i64>().unwrap())
    };
    assert_eq!(
        ttl(&[("cache-control", "max-age=10, s-maxage=20")]).await,
        Some(20)
    );
    assert_eq!(ttl(&[("cache-control", "max-age=10")]).await, Some(10));
    assert_eq!(ttl(&[("cache-control", "max-age=\"15\"")]).await, Some(15));
    assert_eq!(
        ttl(&[
            ("cache-control", "max-age=10"),
            ("edge-cache-control", "max-age=30")
        ])
        .await,
        Some(30)
    );
    // Not an RFC 9651 dictionary: ignored, `Cache-Control` applies.
    assert_eq!(
        ttl(&[
            ("cache-control", "max-age=10"),
            ("edge-cache-control", "max-age=\"30\"")
        ])
        .await,
        Some(10)
    );
    // `Age` from upstream counts (§4.2.3).
    assert_eq!(
        ttl(&[("cache-control", "max-age=10"), ("age", "4")]).await,
        Some(6)
    );
    let expires = crate::cache_headers::HttpDate::from_unix_seconds(
        crate::cache_headers::HttpDate::now().unix_seconds() + 40,
    )
    .unwrap()
    .to_header_value();
    let expires: &'static str = Box::leak(expires.to_str().unwrap().to_owned().into_boxed_str());
    let from_expires = ttl(Box::leak(Box::new([("expires", expires)])))
        .await
        .unwrap();
    assert!((39..=40).contains(&from_expires), "{from_expires}");
    // An invalid `Expires` is already expired (§5.3).
    assert_eq!(ttl(&[("expires", "0")]).await, None);
}

// RFC 9111 §3.5: a request with `Authorization` reuses (and fills) a
// shared entry only when the response says `public`, `s-maxage` or
// `must-revalidate`.
#[tokio::test]
async fn authorization_rule() {
    for (cc, shared) in [
        ("max-age=60", false),
        ("public, max-age=60", true),
        ("s-maxage=60", true),
        ("max-age=60, must-revalidate", true),
    ] {
        let layer = ResponseCacheLayer::new();
        let fields: &'static [(&'static str, &'static str)] =
            Box::leak(Box::new([("cache-control", cc)]));
        let (mut svc, n) = service(&layer, answering(fields, "x"));
        // Stored from an anonymous request.
        get(&mut svc, "/a").await;
        let authed = get_with(&mut svc, "/a", &[("authorization", "Bearer t")]).await;
        assert_eq!(authed.is_hit(), shared, "{cc}");
        if !shared {
            assert_eq!(authed.cache_status()["fwd"], "miss");
        }
        // Filled from an authorized request.
        get_with(&mut svc, "/b", &[("authorization", "Bearer t")]).await;
        let anonymous = get(&mut svc, "/b").await;
        assert_eq!(anonymous.is_hit(), shared, "{cc}");
        let expected = if shared { 2 } else { 4 };
        assert_eq!(calls(&n), expected, "{cc}");
    }
}

// A per-principal rule: each `Subject` its own entry; no subject, no cache.
#[tokio::test]
async fn per_subject_entries() {
    let layer = ResponseCacheLayer::builder()
        .rule(
            ResponseCacheRule::new()
                .path("/me")
                .per_subject()
                .lifetime(Duration::from_secs(30)),
        )
        .build()
        .unwrap();
    let (mut svc, n) = service(&layer, |req: Request<Full<Bytes>>| {
        let who = req
            .extensions()
            .get::<crate::Subject>()
            .map_or("nobody".to_owned(), |s| s.as_str().to_owned());
        std::future::ready(Response::new(Full::from(who)))
    });
    let as_user = |user: &str| {
        let mut request = Request::get("/me")
            .header("authorization", "Bearer x")
            .body(Full::default())
            .unwrap();
        request
            .extensions_mut()
            .insert(crate::Subject::new(user.to_owned()));
        request
    };
    assert_eq!(send(&mut svc, as_user("alice")).await.body, "alice");
    assert_eq!(send(&mut svc, as_user("bob")).await.body, "bob");
    let alice = send(&mut svc, as_user("alice")).await;
    assert_eq!((alice.body.as_ref(), alice.is_hit()), (&b"alice"[..], true));
    assert_eq!(calls(&n), 2);
    let nobody = get(&mut svc, "/me").await;
    assert_eq!(nobody.cache_status()["fwd"], "bypass");
    assert_eq!(nobody.body, "nobody");
}

// RFC 9111 §4.1: the request fields named by `Vary` are the secondary key.
#[tokio::test]
async fn vary_is_the_secondary_key() {
    let layer = ResponseCacheLayer::new();
    let (mut svc, n) = service(&layer, |req: Request<Full<Bytes>>| {
        let lang = req
            .headers()
            .get("accept-language")
            .map_or("none".to_owned(), |v| v.to_str().unwrap().to_owned());
        std::future::ready(
            Response::builder()
                .header("cache-control", "max-age=60")
                .header("vary", "Accept-Language")
                .body(Full::from(lang))
                .unwrap(),
        )
    });
    let en = get_with(&mut svc, "/v", &[("accept-language", "en")]).await;
    assert_eq!(en.cache_status()["fwd"], "uri-miss");
    let fr = get_with(&mut svc, "/v", &[("accept-language", "fr")]).await;
    assert_eq!(
        (fr.body.as_ref(), fr.cache_status()["fwd"].as_str()),
        (&b"fr"[..], "vary-miss")
    );
    let none = get(&mut svc, "/v").await;
    assert_eq!(none.body, "none");
    assert_eq!(calls(&n), 3);
    for (lang, body) in [("en", "en"), ("fr", "fr")] {
        let hit = get_with(&mut svc, "/v", &[("accept-language", lang)]).await;
        assert!(hit.is_hit());
        assert_eq!(hit.body, body);
    }
    assert!(get(&mut svc, "/v").await.is_hit());
    assert_eq!(calls(&n), 3);
}

// Byte caps: a body over the entry cap streams through unstored; the
// memory tier evicts its oldest entries to stay within its bytes.
#[tokio::test]
async fn byte_caps() {
    let layer = ResponseCacheLayer::builder()
        .max_entry_bytes(1000)
        .max_memory_bytes(4000)
        .build()
        .unwrap();
    let (mut svc, n) = service(&layer, |req: Request<Full<Bytes>>| {
        let size = if req.uri().path() == "/big" {
            1001
        } else {
            600
        };
        std::future::ready(
            Response::builder()
                .header("cache-control", "max-age=60")
                .body(Full::from(vec![b'x'; size]))
                .unwrap(),
        )
    });
    let big = get(&mut svc, "/big").await;
    assert_eq!(big.body.len(), 1001);
    assert!(!big.cache_status().contains_key("stored"));
    get(&mut svc, "/big").await;
    assert_eq!(calls(&n), 2);
    for i in 0..10 {
        get(&mut svc, &format!("/small/{i}")).await;
    }
    let stats = layer.handle().stats();
    assert!(stats.bytes <= 4000, "{stats:?}");
    assert!(stats.evicted >= 6, "{stats:?}");
    // The newest stay, the oldest went.
    assert!(get(&mut svc, "/small/9").await.is_hit());
    assert!(!get(&mut svc, "/small/0").await.is_hit());
}

type Frames = Result<http_body::Frame<Bytes>, Infallible>;
type Stream = http_body_util::StreamBody<tokio_stream::wrappers::ReceiverStream<Frames>>;
type StreamService = BoxCloneService<Request<Full<Bytes>>, Response<Stream>, Infallible>;

/// A streaming handler: each request gets a body fed by a channel the
/// test holds; `content_type` and an unknown length.
fn streaming(
    content_type: &'static str,
) -> (
    ResponseCache<StreamService>,
    tokio::sync::mpsc::Receiver<tokio::sync::mpsc::Sender<Frames>>,
) {
    let (senders_tx, senders_rx) = tokio::sync::mpsc::channel(8);
    let inner = tower::service_fn(move |_req: Request<Full<Bytes>>| {
        let senders_tx = senders_tx.clone();
        async move {
            let (tx, rx) = tokio::sync::mpsc::channel(8);
            senders_tx.send(tx).await.unwrap();
            let body =
                http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            Ok::<_, Infallible>(
                Response::builder()
                    .header("content-type", content_type)
                    .header("cache-control", "max-age=60")
                    .body(body)
                    .unwrap(),
            )
        }
    });
    let layer = ResponseCacheLayer::builder()
        .max_entry_bytes(10)
        .build()
        .unwrap();
    (layer.layer(BoxCloneService::new(inner)), senders_rx)
}

// Streaming is never held back: an event stream's first event reaches the
// client while the stream is open, and is never stored; a body of unknown
// length is copied only while under the entry cap.
#[tokio::test]
async fn streams_pass_through_and_are_copied_only_under_the_cap() {
    use http_body::Frame;
    let (mut svc, mut senders) = streaming("text/event-stream");
    let request = || Request::get("/events").body(Full::default()).unwrap();
    let response = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert!(!cache_status(response.headers()).contains_key("stored"));
    let tx = senders.recv().await.unwrap();
    tx.send(Ok(Frame::data(Bytes::from_static(b"data: 1\n\n"))))
        .await
        .unwrap();
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "data: 1\n\n");
    drop(tx);
    assert!(body.frame().await.is_none());
    // Not stored: the second request streams from the handler again.
    let again = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert!(!cache_status(again.headers()).contains_key("hit"));
    drop(senders.recv().await.unwrap());

    // Unknown length, over the cap of 10 bytes: streamed, not stored.
    let (mut svc, mut senders) = streaming("text/plain");
    let big = svc.ready().await.unwrap().call(request()).await.unwrap();
    let tx = senders.recv().await.unwrap();
    for chunk in [&b"0123456"[..], b"789abc"] {
        tx.send(Ok(Frame::data(Bytes::from_static(chunk))))
            .await
            .unwrap();
    }
    drop(tx);
    assert_eq!(
        big.into_body().collect().await.unwrap().to_bytes(),
        "0123456789abc"
    );
    let again = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert!(!cache_status(again.headers()).contains_key("hit"));
    let tx = senders.recv().await.unwrap();
    // Under the cap, in two frames: stored when it ends.
    for chunk in [&b"01234"[..], b"56789"] {
        tx.send(Ok(Frame::data(Bytes::from_static(chunk))))
            .await
            .unwrap();
    }
    drop(tx);
    assert_eq!(
        again.into_body().collect().await.unwrap().to_bytes(),
        "0123456789"
    );
    let hit = svc.ready().await.unwrap().call(request()).await.unwrap();
    assert!(cache_status(hit.headers()).contains_key("hit"));
    assert_eq!(
        hit.into_body().collect().await.unwrap().to_bytes(),
        "0123456789"
    );
}
