//! The layer and its service: find the token, authenticate it, then call
//! the inner service or answer with the rejection.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use serde::de::DeserializeOwned;
use tower_layer::Layer;
use tower_service::Service;

use super::authenticate::{Outcome, Shared};
use super::cache::TokenCache;
use super::claims::StandardClaims;
use super::error::JwtError;
use super::future::{ResponseFuture, finish_response};
use crate::body::ResponseBody;
use crate::principal::Anonymous;

/// Layer that applies [`JwtAuth`]: bearer-token authentication. See the
/// [module docs](super).
pub struct JwtAuthLayer<T = StandardClaims> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for JwtAuthLayer<T> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<T> fmt::Debug for JwtAuthLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("algorithms", &self.shared.rules.header.algorithms)
            .field("optional", &self.shared.optional)
            .finish_non_exhaustive()
    }
}

impl<T> JwtAuthLayer<T> {
    pub(super) fn from_shared(shared: Arc<Shared<T>>) -> Self {
        Self { shared }
    }

    /// How many verified tokens the cache holds now (0 when it is off).
    pub fn cached_tokens(&self) -> usize {
        self.shared.cache.as_ref().map_or(0, TokenCache::len)
    }
}

impl<S, T> Layer<S> for JwtAuthLayer<T> {
    type Service = JwtAuth<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuth {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Middleware that authenticates bearer tokens; see [`JwtAuthLayer`].
///
/// The inner service must be `Clone + Send + 'static` (as axum, hyper and
/// tonic services are): when a [`KeySource`](super::KeySource) refreshes its keys, the request
/// and the ready inner service move into a boxed future. That rare path is
/// the only one that boxes; cached and uncached verifications answer
/// without allocating a future.
pub struct JwtAuth<S, T = StandardClaims> {
    inner: S,
    shared: Arc<Shared<T>>,
}

impl<S: Clone, T> Clone for JwtAuth<S, T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug, T> fmt::Debug for JwtAuth<S, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, T> JwtAuth<S, T> {
    /// Wraps `inner` with the configuration of `layer` (what
    /// [`Layer::layer`] does); the cache is shared with every service of
    /// that layer.
    pub fn new(inner: S, layer: &JwtAuthLayer<T>) -> Self {
        Self {
            inner,
            shared: Arc::clone(&layer.shared),
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    /// How many verified tokens the shared cache holds now.
    pub fn cached_tokens(&self) -> usize {
        self.shared.cache.as_ref().map_or(0, TokenCache::len)
    }
}

impl<S, T, ReqBody, ResBody> Service<Request<ReqBody>> for JwtAuth<S, T>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
    ReqBody: Send + 'static,
    ResBody: 'static,
    T: DeserializeOwned + Send + Sync + 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let (outcome, from_query) = match shared.sources.find(request.headers(), request.uri()) {
            Err(err) => return ResponseFuture::reject(shared.reject(err, &request)),
            Ok(None) if shared.optional => {
                request
                    .extensions_mut()
                    .insert(Anonymous(Arc::clone(&shared.challenges.answers)));
                return ResponseFuture::inner(self.inner.call(request), false);
            }
            Ok(None) => {
                return ResponseFuture::reject(shared.reject(JwtError::Missing, &request));
            }
            Ok(Some(found)) => {
                let outcome = shared.authenticate(&found.token);
                let token = match &outcome {
                    Outcome::Refresh(..) => Some(found.token.into_owned()),
                    _ => None,
                };
                ((outcome, token), found.from_query)
            }
        };
        match outcome {
            (Outcome::Authenticated(authenticated), _) => {
                if shared.admit(&mut request, &authenticated) {
                    ResponseFuture::inner(self.inner.call(request), from_query)
                } else {
                    ResponseFuture::reject(shared.deny_scope(&request))
                }
            }
            (Outcome::Rejected(err), _) => ResponseFuture::reject(shared.reject(err, &request)),
            (Outcome::Refresh(refresh, generation), token) => {
                // The slow path (a remote key set refetches): box it, with
                // the ready inner service moved in.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                let shared = Arc::clone(&self.shared);
                let token = token.unwrap_or_default();
                ResponseFuture::boxed(Box::pin(async move {
                    let lookup = refresh.await;
                    let authenticated =
                        match shared.authenticate_after_refresh(&token, lookup, generation) {
                            Outcome::Authenticated(authenticated) => authenticated,
                            Outcome::Rejected(err) => {
                                return Ok(shared.reject(err, &request));
                            }
                            Outcome::Refresh(..) => {
                                return Ok(shared.reject(JwtError::UnknownKey, &request));
                            }
                        };
                    if !shared.admit(&mut request, &authenticated) {
                        return Ok(shared.deny_scope(&request));
                    }
                    let response = inner.call(request).await?;
                    Ok(finish_response(response, from_query))
                }))
            }
        }
    }
}
