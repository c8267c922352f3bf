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

/// The bit of a path in [`Shared::exempt_bits`]: from its length and its
/// last byte, so a path is compared with the exempt ones only when both
/// match one of theirs (`/hello` and `/livez` have the same length).
#[inline]
pub(crate) fn path_bit(path: &str) -> u64 {
    let last = path.as_bytes().last().copied().unwrap_or(0);
    1 << (path.len().wrapping_mul(31).wrapping_add(usize::from(last)) & 63)
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
    /// apart by their bit alone (see `path_bit`).
    #[inline]
    fn is_exempt_path(&self, path: &str) -> bool {
        self.exempt_bits & path_bit(path) != 0 && self.exempt_paths.iter().any(|p| **p == *path)
    }

    /// Whether a request skips the limits (health and readiness checks).
    #[inline]
    fn is_exempt(&self, info: &RequestInfo<'_>) -> bool {
        self.is_exempt_path(info.uri().path())
            || self.exempt.as_ref().is_some_and(|exempt| exempt(info))
    }

    /// Admission of a request that needs nothing of the request but its
    /// path (a global limit without partitions, no per-key limit, no
    /// exemption predicate), when it is admitted; `None` when the full
    /// [`admit`](Self::admit) must decide (it also sees exempt paths and
    /// sheds).
    #[inline]
    fn admit_fast(self: &Arc<Self>, path: &str) -> Option<Permit> {
        if !self.simple || self.is_exempt_path(path) {
            return None;
        }
        let in_flight = self.global.as_ref()?.try_acquire(Slot::Whole)?;
        Some(Permit::holding(Arc::clone(self), Slot::Whole, in_flight))
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

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if let Some(permit) = self.shared.admit_fast(request.uri().path()) {
            return ResponseFuture::admitted(self.inner.call(request), Some(permit));
        }
        self.call_with_admission(request)
    }
}

impl<S> Overload<S> {
    /// `call` of a request the fast path did not admit: the full
    /// admission (exemptions, keys, partitions), sheds and the queue. Kept
    /// out of line, so the fast path stays small enough to inline.
    #[inline(never)]
    fn call_with_admission<ReqBody, ResBody>(
        &mut self,
        request: Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    {
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
