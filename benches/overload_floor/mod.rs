//! The floor of what the issue asks of an admitted request: one atomic
//! admission in `call` (no permit in `poll_ready`) and a guard carried
//! until the response body ends. No limits beyond one counter, no
//! rejection, no metrics, no adaptive sample: what is left of
//! `OverloadLayer`'s fast path once every feature is taken away. Its
//! overhead is the least a layer meeting the requirements pays in this
//! bench; the `tower_edge` case is compared with it and with tower's
//! `ConcurrencyLimit` (which releases at the response head).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tower::Service;

/// Counts requests in flight: one `fetch_add` in, one `fetch_sub` out.
pub struct Floor<S> {
    pub inner: S,
    pub in_flight: Arc<AtomicUsize>,
}

/// Given back when the body ends or is dropped.
pub struct Guard(Arc<AtomicUsize>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl<S, R, B> Service<Request<R>> for Floor<S>
where
    S: Service<Request<R>, Response = Response<B>>,
{
    type Response = Response<GuardBody<B>>;
    type Error = S::Error;
    type Future = GuardFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<R>) -> Self::Future {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = Guard(Arc::clone(&self.in_flight));
        GuardFuture {
            inner: self.inner.call(request),
            guard: Some(guard),
        }
    }
}

pin_project! {
    pub struct GuardFuture<F> {
        #[pin]
        inner: F,
        guard: Option<Guard>,
    }
}

impl<F, B, E> Future for GuardFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<GuardBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let output = ready!(this.inner.poll(cx));
        let guard = this.guard.take();
        Poll::Ready(output.map(|response| response.map(|inner| GuardBody { inner, guard })))
    }
}

pin_project! {
    pub struct GuardBody<B> {
        #[pin]
        inner: B,
        guard: Option<Guard>,
    }
}

impl<B: Body> Body for GuardBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if frame.is_none() {
            this.guard.take();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
