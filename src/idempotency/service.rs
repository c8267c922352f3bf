//! The layer, its service and its response future.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::IDEMPOTENCY_KEY;
use super::body::{IdempotencyBody, RequestBody};
use super::flow::{self, Answer};
use super::key::IdempotencyKey;
use super::state::Config;
use crate::rate_limit::RequestInfo;
use crate::rejection::grpc_content_type;

/// Makes retried unsafe requests run once; see the [module docs](super).
///
/// Cheap to clone: the configuration and the store are shared, so every
/// clone of the service (one per connection) sees the same keys.
#[derive(Clone)]
pub struct IdempotencyLayer {
    config: Arc<Config>,
}

impl fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.config, f)
    }
}

impl Default for IdempotencyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl IdempotencyLayer {
    /// The default layer: `POST` and `PATCH` on every path, key optional,
    /// a [`MemoryStore`](super::MemoryStore) of its own.
    pub fn new() -> Self {
        Self::builder()
            .build()
            .unwrap_or_else(|_| unreachable!("the default configuration is valid"))
    }

    pub(crate) fn from_config(config: Config) -> Self {
        Self {
            config: Arc::new(config),
        }
    }

    /// How many store calls failed since the layer was built (each one
    /// got the [`OnStoreError`](super::OnStoreError) answer).
    pub fn store_errors(&self) -> u64 {
        self.config.store_errors.load(Ordering::Relaxed)
    }
}

impl<S> Layer<S> for IdempotencyLayer {
    type Service = Idempotency<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Idempotency {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service of [`IdempotencyLayer`].
#[derive(Clone)]
pub struct Idempotency<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: fmt::Debug> fmt::Debug for Idempotency<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Idempotency")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> Idempotency<S> {
    /// Wraps `inner` with `layer`'s configuration.
    pub fn new(inner: S, layer: &IdempotencyLayer) -> Self {
        layer.layer(inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl Config {
    /// Whether the layer applies to `method` on `path`: `Some(required)`.
    fn applies(&self, method: &Method, path: &str) -> Option<bool> {
        if self.routes.is_empty() {
            return self.methods.contains(method).then_some(false);
        }
        let route = self.routes.iter().find(|r| r.matches_path(path))?;
        let methods = route.methods.as_ref().unwrap_or(&self.methods);
        methods.contains(method).then_some(route.required)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Idempotency<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body<Data = Bytes> + Send + 'static,
    ReqBody::Error: Send,
    ResBody: Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Send,
{
    type Response = Response<IdempotencyBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let Some(required) = config.applies(request.method(), request.uri().path()) else {
            return ResponseFuture::inner(self.inner.call(request.map(RequestBody::new)));
        };
        let grpc = grpc_content_type(request.version(), request.headers()).cloned();
        let key = match IdempotencyKey::from_lines(
            request.headers().get_all(IDEMPOTENCY_KEY),
            config.max_key_length,
        ) {
            Ok(Some(key)) => key,
            Ok(None) if required => {
                return ResponseFuture::ready(flow::answer(config, Answer::MissingKey, grpc));
            }
            Ok(None) => {
                return ResponseFuture::inner(self.inner.call(request.map(RequestBody::new)));
            }
            Err(invalid) => {
                return ResponseFuture::ready(flow::answer(
                    config,
                    Answer::InvalidKey(invalid),
                    grpc,
                ));
            }
        };
        let info = RequestInfo::new(
            request.method(),
            request.uri(),
            request.headers(),
            request.extensions(),
            &config.ip,
        );
        let Some(scope) = config.scope.scope(&info) else {
            if !config.unscoped_logged.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    "idempotency: a request has no scope (no subject, no peer address): it runs \
                     without idempotency; logged once"
                );
            }
            return ResponseFuture::inner(self.inner.call(request.map(RequestBody::new)));
        };
        if request.body().size_hint().lower() > config.max_body_bytes as u64 {
            return ResponseFuture::ready(flow::answer(config, Answer::TooLarge, grpc));
        }
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            kind: Kind::Flow {
                future: Box::pin(flow::run(
                    Arc::clone(&self.config),
                    inner,
                    request,
                    key,
                    scope,
                    grpc,
                )),
            },
        }
    }
}

type FlowFuture<B, E> =
    Pin<Box<dyn Future<Output = Result<Response<IdempotencyBody<B>>, E>> + Send + 'static>>;

pin_project! {
    /// The response future of [`Idempotency`]: the inner service's future
    /// for requests the layer does not apply to (no allocation), an answer
    /// of the layer, or the boxed flow of an idempotent request (which
    /// buffers its body anyway).
    pub struct ResponseFuture<F, B: Body, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B: Body, E> {
        Inner { #[pin] future: F },
        Ready { response: Option<Response<IdempotencyBody<B>>> },
        Flow { future: FlowFuture<B, E> },
    }
}

impl<F, B: Body, E> ResponseFuture<F, B, E> {
    fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner { future },
        }
    }

    fn ready(response: Response<IdempotencyBody<B>>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }
}

impl<F, B: Body, E> fmt::Debug for ResponseFuture<F, B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.kind {
            Kind::Inner { .. } => "ResponseFuture::Inner",
            Kind::Ready { .. } => "ResponseFuture::Ready",
            Kind::Flow { .. } => "ResponseFuture::Flow",
        })
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<IdempotencyBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { future } => future
                .poll(cx)
                .map(|result| result.map(|response| response.map(IdempotencyBody::inner))),
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => panic!("ResponseFuture polled after completion"),
            },
            KindProj::Flow { future } => future.as_mut().poll(cx),
        }
    }
}
