//! Authorization headers through the public JWT layer with a fixed HS256
//! key: never a panic, never a 5xx, never accepted (nothing here is signed
//! with the key), always 400 or 401.
#![no_main]

use std::convert::Infallible;
use std::sync::OnceLock;

use http::{HeaderValue, Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::{Layer, ServiceExt};
use tower_edge::jwt_auth::{Algorithm, JwtAuthLayer, VerificationKey};

fn layer() -> &'static JwtAuthLayer {
    static LAYER: OnceLock<JwtAuthLayer> = OnceLock::new();
    LAYER.get_or_init(|| {
        JwtAuthLayer::builder()
            .key(
                VerificationKey::hmac(Algorithm::HS256, b"fuzz secret of at least 32 bytes!!")
                    .unwrap(),
            )
            .build()
            .unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let mut request = Request::new(());
    if selector & 1 == 0 {
        // The input is the token.
        let mut value = b"Bearer ".to_vec();
        value.extend_from_slice(rest);
        let Ok(value) = HeaderValue::from_bytes(&value) else {
            return;
        };
        request
            .headers_mut()
            .insert(http::header::AUTHORIZATION, value);
    } else {
        // The input is one or more whole Authorization lines.
        let lines = fuzz_support::header_lines(rest);
        fuzz_support::append_all(request.headers_mut(), &http::header::AUTHORIZATION, &lines);
    }
    let service = layer().layer(tower::service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(()))
    }));
    let response = fuzz_support::block_on(service.oneshot(request)).unwrap();
    let status = response.status();
    assert!(
        status == StatusCode::UNAUTHORIZED || status == StatusCode::BAD_REQUEST,
        "{status}"
    );
    assert!(
        response.headers().contains_key("www-authenticate") || status == StatusCode::BAD_REQUEST
    );
});
