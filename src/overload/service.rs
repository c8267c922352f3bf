//! The service: admission in `call`, rejections; its response future is in
//! [`future`](super::future).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use http::header::RETRY_AFTER;
use http::{HeaderName, Request, Response, StatusCode};
use tokio::sync::oneshot;
use tower_service::Service;

use super::body::OverloadBody;
use super::future::ResponseFuture;
use super::keyed::KeyAdmission;
use super::limiter::{Shed, Slot};
use super::permit::Permit;
use super::{OverloadLayer, Shared};
use crate::decision::{Decision, EdgeLayer, Reason};
use crate::rate_limit::RequestInfo;
use crate::rejection::Problem;

/// The bit of a path length in [`Shared::exempt_lengths`] (lengths of 63
/// and above share the last bit).
#[inline]
pub(crate) const fn length_bit(len: usize) -> u64 {
    1 << if len < 63 { len } else { 63 }
}

const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// Middleware that bounds the requests in flight and sheds the excess at
/// once; see the [module docs](super). Made by [`OverloadLayer`].
///
/// `poll_ready` only forwards to the inner service: no permit is taken
/// before a request exists, so idle connections hold none. Every clone
/// shares the layer's limits through one `Arc`. The inner service must be
/// `Clone` (as routers and `service_fn`s are): a queued request takes the
/// ready one with it and leaves a clone behind.
pub struct Overload<S> {
    pub(crate) inner: S,
    pub(crate) shared: Arc<Shared>,
}

impl<S> Overload<S> {
    /// Wraps `inner` with the limits of `layer` (what
    /// [`Layer::layer`](tower_layer::Layer::layer) does); services made
    /// from one layer share its limits.
    pub fn new(inner: S, layer: &OverloadLayer) -> Self {
        tower_layer::Layer::layer(layer, inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The inner service, consuming the middleware.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Clone> Clone for Overload<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for Overload<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Overload")
            .field("inner", &self.inner)
            .field("limits", &self.shared)
            .finish()
    }
}

/// What the layer decided for a request.
pub(crate) enum Admission {
    Exempt,
    Admitted(Permit),
    Shed(Shed),
    /// Over the limit, waiting in the queue (the permit holds the key's
    /// slot only).
    Queued(Permit, Slot, oneshot::Receiver<()>),
}

impl Shared {
    /// Whether a path is one of the exempt ones: most requests are told
    /// apart by their length alone.
    #[inline]
    fn is_exempt_path(&self, path: &str) -> bool {
        self.exempt_lengths & length_bit(path.len()) != 0
            && self.exempt_paths.iter().any(|p| **p == *path)
    }

    /// Whether a request skips the limits (health and readiness checks).
    #[inline]
    fn is_exempt(&self, info: &RequestInfo<'_>) -> bool {
        self.is_exempt_path(info.uri().path())
            || self.exempt.as_ref().is_some_and(|exempt| exempt(info))
    }

    /// Admission of a request that needs nothing of the request but its
    /// path (a global limit without partitions, no per-key limit, no
    /// exemption predicate): `None` when the full [`admit`](Self::admit)
    /// must decide.
    #[inline]
    fn admit_fast(self: &Arc<Self>, path: &str) -> Option<Admission> {
        if !self.simple {
            return None;
        }
        if self.is_exempt_path(path) {
            return Some(Admission::Exempt);
        }
        let global = self.global.as_ref()?;
        let in_flight = global.try_acquire(Slot::Whole)?;
        let mut permit = Permit::new(Arc::clone(self), None);
        permit.hold(Slot::Whole, in_flight);
        Some(Admission::Admitted(permit))
    }

    /// Admission of one request: its key's slot, then the global one.
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>, info: &RequestInfo<'_>) -> Admission {
        if self.is_exempt(info) {
            return Admission::Exempt;
        }
        let key = match &self.keyed {
            None => None,
            Some(keyed) => match keyed.key_of(info) {
                None => None,
                Some(key) => match keyed.acquire(key) {
                    KeyAdmission::Admitted => Some(key),
                    KeyAdmission::Limited => return Admission::Shed(Shed::KeyLimited),
                    KeyAdmission::Full => return Admission::Shed(Shed::KeyCapacity),
                },
            },
        };
        let mut permit = Permit::new(Arc::clone(self), key);
        let Some(global) = &self.global else {
            return Admission::Admitted(permit);
        };
        let slot = global.slot_for(info);
        if let Some(in_flight) = global.try_acquire(slot) {
            permit.hold(slot, in_flight);
            return Admission::Admitted(permit);
        }
        if let Some(queue) = &global.queue
            && let Some(wake) = queue.enqueue()
        {
            // A slot freed between the check and the enqueue woke nobody.
            if let Some(in_flight) = global.try_acquire(slot) {
                permit.hold(slot, in_flight);
                return Admission::Admitted(permit);
            }
            return Admission::Queued(permit, slot, wake);
        }
        Admission::Shed(Shed::Overloaded(slot))
    }

    /// The answer to a shed request (HTTP problem+json, or trailers-only
    /// gRPC), counted.
    pub(crate) fn reject<B, R>(
        &self,
        shed: Shed,
        request: &Request<R>,
    ) -> Response<OverloadBody<B>> {
        let global = self.global.as_ref();
        let problem = match shed {
            Shed::KeyLimited | Shed::KeyCapacity => {
                let keyed = self.keyed.as_ref().expect("a key was checked");
                if matches!(shed, Shed::KeyLimited) {
                    self.shed_concurrency.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(
                        limit = &*keyed.name,
                        "overload: too many in flight for a key"
                    );
                    Problem::new(StatusCode::TOO_MANY_REQUESTS)
                        .with_detail("too many requests in flight for this client")
                        .with_header(RETRY_AFTER, self.retry_after.clone())
                        .with_header(RATELIMIT_POLICY, keyed.policy_header.clone())
                        .with_header(RATELIMIT, keyed.remaining_header.clone())
                        .with_decision(
                            Decision::new(EdgeLayer::Overload, Reason::ConcurrencyLimited)
                                .with_policy(Arc::clone(&keyed.name)),
                        )
                } else {
                    self.shed_overloaded.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(limit = &*keyed.name, "overload: per-key map full");
                    self.overloaded(Reason::Overloaded, Some(&keyed.name))
                }
            }
            Shed::Overloaded(slot) | Shed::QueueTimeout(slot) => {
                let global = global.expect("a global slot was checked");
                global.count_shed(slot);
                let partition = global.partition_name(slot);
                let reason = if matches!(shed, Shed::QueueTimeout(_)) {
                    self.shed_queue_timeout.fetch_add(1, Ordering::Relaxed);
                    Reason::QueueTimeout
                } else {
                    self.shed_overloaded.fetch_add(1, Ordering::Relaxed);
                    Reason::Overloaded
                };
                tracing::debug!(
                    reason = reason.as_str(),
                    partition = partition.map(|p| &**p),
                    in_flight = global.in_flight.load(Ordering::Relaxed),
                    limit = global.limit.load(Ordering::Relaxed),
                    "overload: request shed"
                );
                self.overloaded(reason, partition)
            }
        };
        self.rejections
            .respond(problem, request)
            .map(OverloadBody::rejected)
    }

    fn overloaded(&self, reason: Reason, policy: Option<&Arc<str>>) -> Problem {
        let mut decision = Decision::new(EdgeLayer::Overload, reason);
        if let Some(policy) = policy {
            decision = decision.with_policy(Arc::clone(policy));
        }
        Problem::new(StatusCode::SERVICE_UNAVAILABLE)
            .with_detail("the server is overloaded; retry later")
            .with_header(RETRY_AFTER, self.retry_after.clone())
            .with_decision(decision)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Overload<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<OverloadBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if let Some(Admission::Admitted(permit)) = self.shared.admit_fast(request.uri().path()) {
            return ResponseFuture::admitted(self.inner.call(request), Some(permit));
        }
        let admission = {
            let info = RequestInfo::new(
                request.method(),
                request.uri(),
                request.headers(),
                request.extensions(),
                &self.shared.ip,
            );
            self.shared.admit(&info)
        };
        match admission {
            Admission::Exempt => ResponseFuture::admitted(self.inner.call(request), None),
            Admission::Admitted(permit) => {
                ResponseFuture::admitted(self.inner.call(request), Some(permit))
            }
            Admission::Shed(shed) => ResponseFuture::rejected(self.shared.reject(shed, &request)),
            Admission::Queued(permit, slot, wake) => {
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture::queued(inner, request, permit, slot, wake)
            }
        }
    }
}
