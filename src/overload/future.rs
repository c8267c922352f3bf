//! The response future of [`Overload`](super::Overload): the inner
//! service's future holding the permit, a rejection, or a request waiting
//! in the queue.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tokio::time::Sleep;
use tower_service::Service;

use super::body::OverloadBody;
use super::limiter::{Shed, Slot};
use super::permit::Permit;

/// A request waiting in the queue.
pub(crate) struct Queued<S, B> {
    deadline: Pin<Box<Sleep>>,
    inner: S,
    request: Request<B>,
    permit: Permit,
    slot: Slot,
    wake: oneshot::Receiver<()>,
}

pin_project! {
    /// Response future of [`Overload`](super::Overload).
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        kind: Kind<S, ReqBody, ResBody>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Admitted {
            #[pin]
            future: S::Future,
            permit: Option<Permit>,
        },
        // Boxed, like the queued state: the admitted path moves the future
        // around, and the cold variants must not make it larger.
        Rejected {
            response: Option<Box<Response<OverloadBody<ResBody>>>>,
        },
        Queued {
            state: Option<Box<Queued<S, ReqBody>>>,
        },
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    #[inline]
    pub(crate) fn admitted(future: S::Future, permit: Option<Permit>) -> Self {
        Self {
            kind: Kind::Admitted { future, permit },
        }
    }

    /// The admitted state, the inner future made in place (one move of it
    /// less than [`admitted`](Self::admitted) on the hot path).
    #[inline(always)]
    pub(crate) fn admitted_with(call: impl FnOnce() -> S::Future, permit: Permit) -> Self {
        Self {
            kind: Kind::Admitted {
                future: call(),
                permit: Some(permit),
            },
        }
    }

    pub(crate) fn rejected(response: Response<OverloadBody<ResBody>>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(Box::new(response)),
            },
        }
    }

    pub(crate) fn queued(
        inner: S,
        request: Request<ReqBody>,
        permit: Permit,
        slot: Slot,
        wake: oneshot::Receiver<()>,
    ) -> Self {
        let max_wait = permit.queue_wait();
        Self {
            kind: Kind::Queued {
                state: Some(Box::new(Queued {
                    deadline: Box::pin(tokio::time::sleep(max_wait)),
                    inner,
                    request,
                    permit,
                    slot,
                    wake,
                })),
            },
        }
    }
}

impl<S, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Admitted { .. } => "admitted",
            Kind::Rejected { .. } => "rejected",
            Kind::Queued { .. } => "queued",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

/// Whether an answer of the inner service says it is overloaded (a drop,
/// for the adaptive limit).
#[inline]
fn is_drop(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT
    )
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<OverloadBody<ResBody>>, S::Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            let next = match kind.as_mut().project() {
                KindProj::Admitted { future, permit } => {
                    return Poll::Ready(match ready!(future.poll(cx)) {
                        Ok(response) => {
                            if let Some(permit) = permit.as_mut() {
                                permit.record(is_drop(response.status()));
                            }
                            let permit = permit.take();
                            Ok(response.map(|body| OverloadBody::admitted(body, permit)))
                        }
                        Err(error) => {
                            if let Some(mut permit) = permit.take() {
                                permit.record(true);
                            }
                            Err(error)
                        }
                    });
                }
                KindProj::Rejected { response } => {
                    return Poll::Ready(Ok(*response.take().expect("polled after completion")));
                }
                KindProj::Queued { state } => {
                    let queued = state.as_mut().expect("polled after completion");
                    match poll_queued(queued, cx) {
                        Some(true) => {
                            let Queued {
                                mut inner,
                                request,
                                permit,
                                ..
                            } = *state.take().expect("present");
                            Kind::Admitted {
                                future: inner.call(request),
                                permit: Some(permit),
                            }
                        }
                        Some(false) => {
                            let slot = queued_slot(state);
                            shed(state, Shed::Overloaded(slot))
                        }
                        None if state
                            .as_mut()
                            .expect("present")
                            .deadline
                            .as_mut()
                            .poll(cx)
                            .is_ready() =>
                        {
                            let slot = queued_slot(state);
                            shed(state, Shed::QueueTimeout(slot))
                        }
                        None => return Poll::Pending,
                    }
                }
            };
            kind.set(next);
        }
    }
}

fn queued_slot<S, B>(state: &Option<Box<Queued<S, B>>>) -> Slot {
    state.as_ref().expect("present").slot
}

/// The rejection of a queued request.
fn shed<S, ReqBody, ResBody>(
    state: &mut Option<Box<Queued<S, ReqBody>>>,
    why: Shed,
) -> Kind<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    let queued = state.take().expect("present");
    let response = queued.permit.shared().reject(why, &queued.request);
    // Dropping the permit gives the key's slot back.
    drop(queued);
    Kind::Rejected {
        response: Some(Box::new(response)),
    }
}

/// Polls a queued request's wake-up: `Some(true)` when it got a slot,
/// `Some(false)` when the queue has no room left for it, `None` while it
/// waits.
fn poll_queued<S, B>(queued: &mut Queued<S, B>, cx: &mut Context<'_>) -> Option<bool> {
    let shared = queued.permit.shared_arc();
    let global = shared
        .global
        .as_ref()
        .expect("queued requests have a global limit");
    loop {
        if Pin::new(&mut queued.wake).poll(cx).is_pending() {
            return None;
        }
        if let Some(in_flight) = global.try_acquire(queued.slot) {
            queued.permit.hold(queued.slot, in_flight);
            return Some(true);
        }
        // Another request took the slot first: wait again.
        match global.queue.as_ref().and_then(|queue| queue.enqueue()) {
            Some(wake) => queued.wake = wake,
            None => return Some(false),
        }
        if let Some(in_flight) = global.try_acquire(queued.slot) {
            queued.permit.hold(queued.slot, in_flight);
            return Some(true);
        }
    }
}
