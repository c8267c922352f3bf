//! The response body of [`Overload`](super::Overload): holds the request's
//! permit until the body ends or is dropped.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::permit::Permit;
use crate::body::ResponseBody;

pin_project! {
    /// Response body of [`Overload`](super::Overload): the inner service's
    /// body (or a rejection's), holding the request's place in the limits
    /// until the last frame is read, the body fails, or it is dropped, so a
    /// streamed response counts as in flight while it streams.
    pub struct OverloadBody<B> {
        #[pin]
        inner: ResponseBody<B>,
        permit: Option<Permit>,
    }
}

impl<B> OverloadBody<B> {
    #[inline]
    pub(crate) fn admitted(body: B, permit: Option<Permit>) -> Self {
        Self {
            inner: ResponseBody::new(body),
            permit,
        }
    }

    pub(crate) fn rejected(body: ResponseBody<B>) -> Self {
        Self {
            inner: body,
            permit: None,
        }
    }
}

impl<B> std::fmt::Debug for OverloadBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverloadBody")
            .field("inner", &self.inner)
            .field("holds_permit", &self.permit.is_some())
            .finish()
    }
}

impl<B> Body for OverloadBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if this.permit.is_some()
            && match &frame {
                Some(Ok(_)) => this.inner.is_end_stream(),
                None | Some(Err(_)) => true,
            }
        {
            drop(this.permit.take());
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
