//! A response body that sends one chunk, then stays open for ever (a live
//! stream: SSE, a long poll), for tests that a layer never holds a stream
//! back.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Frame;

/// Yields `first`, then is pending for ever.
pub struct FirstThenOpen {
    first: Option<Bytes>,
}

impl FirstThenOpen {
    /// A body that sends `first` at once and never ends.
    pub fn new(first: &'static [u8]) -> Self {
        Self {
            first: Some(Bytes::from_static(first)),
        }
    }
}

impl http_body::Body for FirstThenOpen {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.first.take() {
            Some(first) => Poll::Ready(Some(Ok(Frame::data(first)))),
            None => Poll::Pending,
        }
    }
}
