//! The `peers` stack: the jobs of tower-edge's `full` stack done with the
//! peer crates, wired the way their documentation shows and a user would
//! write the rest.
//!
//! Outermost first: tower-http `SetRequestId` (`MakeRequestUuid`) ->
//! `TraceLayer::new_for_http()` -> `PropagateRequestId` -> tower_governor by
//! peer IP (`use_headers()`) -> jwt-authorizer in optional mode ->
//! tower_governor by subject or IP (`use_headers()`) -> an ETag /
//! `If-None-Match` step -> handler.
//!
//! jwt-authorizer 0.15 has no optional mode and its layer answers axum
//! 0.7's `Response` (the crate lags axum 0.8), so the optional mode is the
//! few lines a user writes around its public `Authorizer`:
//! `extract_token` (no token: the request passes as anonymous), else
//! `check_auth` (a bad token: a 401 like its own). No ETag middleware on crates.io
//! wraps an `http` 1 service (tower-http #324 declined one), so the ETag
//! step is written as a user would: buffer the body, hash it with xxh3,
//! compare with `If-None-Match`, answer 304 on a match (RFC 9110 §13.1.2).

use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http::header::{ETAG, IF_NONE_MATCH, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use jsonwebtoken9::TokenData;
use jwt_authorizer::{Authorizer, JwtAuthorizer, RegisteredClaims};
use tower::ServiceBuilder;
use tower_governor::GovernorLayer;
use tower_governor::errors::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::{KeyExtractor, PeerIpKeyExtractor};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

/// The largest body the ETag step buffers (the same 1 MiB cap a user would
/// pick; larger bodies are answered 500 here, never seen by the bench).
const ETAG_BODY_CAP: usize = 1 << 20;

/// tower_governor's key for the per-client limit: the token's `sub` when
/// the request is authenticated, the peer IP otherwise (what our
/// `SubjectOrIp` does).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// An authenticated subject.
    Subject(String),
    /// An anonymous client, by peer IP.
    Ip(IpAddr),
}

/// Extracts [`ClientKey`] from jwt-authorizer's claims or axum's
/// `ConnectInfo`.
#[derive(Clone, Copy, Debug)]
pub struct SubjectOrIpExtractor;

impl KeyExtractor for SubjectOrIpExtractor {
    type Key = ClientKey;

    fn extract<T>(&self, req: &http::Request<T>) -> Result<Self::Key, GovernorError> {
        if let Some(data) = req.extensions().get::<TokenData<RegisteredClaims>>()
            && let Some(sub) = &data.claims.sub
        {
            return Ok(ClientKey::Subject(sub.clone()));
        }
        req.extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| ClientKey::Ip(addr.ip()))
            .ok_or(GovernorError::UnableToExtractKey)
    }
}

/// jwt-authorizer in optional mode: no token passes as anonymous, a token
/// is verified and its claims put in the extensions, a bad one answered
/// with jwt-authorizer's own 401.
async fn optional_auth(
    State(auth): State<Arc<Authorizer<RegisteredClaims>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(token) = auth.extract_token(request.headers()) else {
        return next.run(request).await;
    };
    match auth.check_auth(&token).await {
        Ok(data) => {
            request.extensions_mut().insert(data);
            next.run(request).await
        }
        // jwt-authorizer's own answer is an axum 0.7 response; the same
        // 401 by hand (RFC 6750 §3.1).
        Err(_) => (
            StatusCode::UNAUTHORIZED,
            [(WWW_AUTHENTICATE, r#"Bearer error="invalid_token""#)],
        )
            .into_response(),
    }
}

/// An ETag step as a user writes it: buffer, hash, compare.
async fn etag(request: Request, next: Next) -> Response {
    let if_none_match = request.headers().get(IF_NONE_MATCH).cloned();
    let response = next.run(request).await;
    if !response.status().is_success() || response.headers().contains_key(ETAG) {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, ETAG_BODY_CAP).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let tag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&bytes));
    let tag = HeaderValue::from_str(&tag).expect("hex in quotes is a valid header value");
    let matches = if_none_match.is_some_and(|value| {
        value.to_str().is_ok_and(|list| {
            list.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == tag)
        })
    });
    if matches {
        let mut not_modified = Response::new(Body::empty());
        *not_modified.status_mut() = StatusCode::NOT_MODIFIED;
        not_modified.headers_mut().insert(ETAG, tag);
        return not_modified;
    }
    parts.headers.insert(ETAG, tag);
    Response::from_parts(parts, Body::from(bytes))
}

/// The peers stack around `router`, in one `Router::layer` (as `full`).
pub async fn peers_stack(router: Router) -> Router {
    let huge = Duration::from_nanos(1);
    let burst = 1_000_000_000;
    let flood_guard = GovernorConfigBuilder::default()
        .period(huge)
        .burst_size(burst)
        .key_extractor(PeerIpKeyExtractor)
        .use_headers()
        .finish()
        .expect("a valid governor configuration");
    let per_client = GovernorConfigBuilder::default()
        .period(huge)
        .burst_size(burst)
        .key_extractor(SubjectOrIpExtractor)
        .use_headers()
        .finish()
        .expect("a valid governor configuration");
    let auth: Authorizer<RegisteredClaims> = JwtAuthorizer::from_secret(crate::SECRET)
        .build()
        .await
        .expect("a valid jwt-authorizer");
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(TraceLayer::new_for_http())
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(GovernorLayer::new(flood_guard))
            .layer(middleware::from_fn_with_state(
                Arc::new(auth),
                optional_auth,
            ))
            .layer(GovernorLayer::new(per_client))
            .layer(middleware::from_fn(etag)),
    )
}
