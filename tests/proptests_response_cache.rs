//! Property tests of the response cache's keys, through the public API.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tower::{Service, ServiceExt};
use tower_edge::response_cache::ResponseCacheLayer;

fn params() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[a-c]{1,2}=[0-9]{0,2}", 1..5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    // RFC 9111 §4.1 lets a cache normalise the key: with `QueryKey::Sorted`
    // (the default), any order of the same parameters (and empty ones)
    // reuses the entry; another set of parameters never does.
    #[test]
    fn permuted_queries_share_an_entry(params in params(), seed in any::<u64>(), extra in "[d-f]=[0-9]") {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async move {
            let calls = Arc::new(AtomicUsize::new(0));
            let counted = Arc::clone(&calls);
            let mut service = tower::ServiceBuilder::new()
                .layer(ResponseCacheLayer::new())
                .service_fn(move |_req: Request<Full<Bytes>>| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("cache-control", "max-age=60")
                                .body(Full::from("x"))
                                .unwrap(),
                        )
                    }
                });
            let mut get = async |query: String| {
                let request = Request::get(format!("/p?{query}")).body(Full::default()).unwrap();
                let response = service.ready().await.unwrap().call(request).await.unwrap();
                response.into_body().collect().await.unwrap();
            };
            get(params.join("&")).await;
            let mut shuffled = params.clone();
            let len = shuffled.len();
            for i in 0..len {
                shuffled.swap(i, (seed as usize).wrapping_add(i * 7) % len);
            }
            get(format!("&{}&", shuffled.join("&&"))).await;
            prop_assert_eq!(calls.load(Ordering::SeqCst), 1);
            let mut more = params.clone();
            more.push(extra);
            get(more.join("&")).await;
            prop_assert_eq!(calls.load(Ordering::SeqCst), 2);
            Ok(())
        })?;
    }
}
