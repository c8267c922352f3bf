//! The [`ResponseCache`] service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use tower_service::Service;

use super::Config;
use super::body::CacheBody;
use super::future::ResponseFuture;
use super::lookup::{Step, step};

/// Middleware that answers GET and HEAD requests from stored responses;
/// made by [`ResponseCacheLayer`](super::ResponseCacheLayer). See the
/// [module docs](super).
#[derive(Clone)]
pub struct ResponseCache<S> {
    pub(crate) inner: S,
    pub(crate) config: Arc<Config>,
}

impl<S> ResponseCache<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for ResponseCache<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseCache")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ResponseCache<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<CacheBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match step(&self.config, &request, false) {
            Step::Answer(response) => ResponseFuture::ready(response, &self.config),
            Step::Refresh(response, miss) => {
                // The ready service refreshes; a clone stays for the next
                // call.
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                super::future::spawn_refresh(ready, request, miss, Arc::clone(&self.config));
                ResponseFuture::ready(response, &self.config)
            }
            Step::Forward(plan) => {
                let future = self.inner.call(request);
                ResponseFuture::forward(future, plan, &self.config)
            }
            Step::Follow(flight) => {
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::follow(flight, ready, request, &self.config)
            }
            Step::Remote(miss) => {
                let clone = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::remote(miss, ready, request, &self.config)
            }
        }
    }
}
