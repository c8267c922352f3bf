//! The response body of [`Overload`](super::Overload): holds the request's
//! permit until the body ends or is dropped.

use bytes::Bytes;
use pin_project_lite::pin_project;

use super::permit::Permit;
use crate::body::ResponseBody;
use crate::body_end::{BodyEnd, OnBodyEnd, body_end_wrapper};

// Dropping the permit releases the request's place.
impl OnBodyEnd for Permit {}

pin_project! {
    /// Response body of [`Overload`](super::Overload): the inner service's
    /// body (or a rejection's), holding the request's place in the limits
    /// until the last frame is read, the body fails, or it is dropped, so a
    /// streamed response counts as in flight while it streams.
    pub struct OverloadBody<B> {
        #[pin]
        inner: BodyEnd<ResponseBody<B>, Permit>,
    }
}

impl<B> OverloadBody<B> {
    #[inline]
    pub(crate) fn admitted(body: B, permit: Option<Permit>) -> Self {
        Self {
            inner: BodyEnd::new(ResponseBody::new(body), permit),
        }
    }

    pub(crate) fn rejected(body: ResponseBody<B>) -> Self {
        Self {
            inner: BodyEnd::new(body, None),
        }
    }
}

impl<B> std::fmt::Debug for OverloadBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverloadBody")
            .field("holds_permit", &!self.inner.is_finished())
            .finish_non_exhaustive()
    }
}

body_end_wrapper!(OverloadBody<B> where B: http_body::Body<Data = Bytes>);
