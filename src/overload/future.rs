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
    ///
    /// A struct, not an enum of states: the admitted path (every request
    /// but the shed and queued ones) holds the inner future in place, with
    /// no state to match (an enum of states cost one more copy of the
    /// response per request).
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        // `Some` once admitted.
        #[pin]
        future: Option<S::Future>,
        permit: Option<Permit>,
        // A rejection, or a request waiting in the queue (boxed: rare, and
        // they must not make the admitted path larger).
        other: Option<Box<Other<S, ReqBody, ResBody>>>,
    }
}

/// The states of a request that is not (yet) admitted.
enum Other<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    Rejected(Response<OverloadBody<ResBody>>),
    Queued(Queued<S, ReqBody>),
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    #[inline]
    pub(crate) fn admitted(future: S::Future, permit: Option<Permit>) -> Self {
        Self {
            future: Some(future),
            permit,
            other: None,
        }
    }

    pub(crate) fn rejected(response: Response<OverloadBody<ResBody>>) -> Self {
        Self {
            future: None,
            permit: None,
            other: Some(Box::new(Other::Rejected(response))),
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
            future: None,
            permit: None,
            other: Some(Box::new(Other::Queued(Queued {
                deadline: Box::pin(tokio::time::sleep(max_wait)),
                inner,
                request,
                permit,
                slot,
                wake,
            }))),
        }
    }
}

impl<S, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.other.as_deref() {
            None => "admitted",
            Some(Other::Rejected(_)) => "rejected",
            Some(Other::Queued(_)) => "queued",
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
        let mut this = self.project();
        loop {
            if let Some(future) = this.future.as_mut().as_pin_mut() {
                let output = ready!(future.poll(cx));
                let mut permit = this.permit.take();
                if let Some(permit) = permit.as_mut() {
                    permit.record(output.as_ref().map_or(true, |r| is_drop(r.status())));
                }
                return Poll::Ready(
                    output
                        .map(|response| response.map(|body| OverloadBody::admitted(body, permit))),
                );
            }
            match this.other.as_deref_mut().expect("polled after completion") {
                Other::Rejected(_) => {
                    let Some(Other::Rejected(response)) = this.other.take().map(|b| *b) else {
                        unreachable!("matched above");
                    };
                    return Poll::Ready(Ok(response));
                }
                Other::Queued(queued) => {
                    let shed_why = match poll_queued(queued, cx) {
                        Some(true) => None,
                        Some(false) => Some(Shed::Overloaded(queued.slot)),
                        None if queued.deadline.as_mut().poll(cx).is_ready() => {
                            Some(Shed::QueueTimeout(queued.slot))
                        }
                        None => return Poll::Pending,
                    };
                    let Some(Other::Queued(queued)) = this.other.take().map(|b| *b) else {
                        unreachable!("matched above");
                    };
                    match shed_why {
                        None => {
                            let Queued {
                                mut inner,
                                request,
                                permit,
                                ..
                            } = queued;
                            this.future.set(Some(inner.call(request)));
                            *this.permit = Some(permit);
                        }
                        Some(why) => {
                            let response = queued.permit.shared().reject(why, &queued.request);
                            // Dropping the permit gives the key's slot back.
                            drop(queued);
                            return Poll::Ready(Ok(response));
                        }
                    }
                }
            }
        }
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
