//! A response body that finishes something when it ends: the piece the
//! access log (its line), the OpenTelemetry layer (its span and duration)
//! and overload protection (its permit) share.
//!
//! "Ends" is the first of: the last frame read (the inner body says it is
//! at its end), a `None` frame, an error frame, or the body dropped unread
//! (the client went away). The [`OnBodyEnd`] value is dropped then, exactly
//! once; its `Drop` does the finishing.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// What a [`BodyEnd`] body carries until it ends; dropping it finishes.
pub(crate) trait OnBodyEnd {
    /// Sees each frame (or error) as it passes, before the end.
    fn frame<D: Buf, E>(&mut self, frame: &Result<Frame<D>, E>) {
        let _ = frame;
    }

    /// Held while the inner body is polled (a span kept current while a
    /// streaming handler produces the body); nothing by default.
    fn polling(&self) -> impl Sized + '_ {}
}

pin_project! {
    /// The inner body, unchanged, carrying `on_end` until it ends.
    pub(crate) struct BodyEnd<B, T> {
        #[pin]
        inner: B,
        on_end: Option<T>,
    }
}

impl<B: Body, T> BodyEnd<B, T> {
    /// Finishes at once when the inner body is already at its end: a 304
    /// or an empty rejection may never be polled.
    #[cfg_attr(not(feature = "correlation-id"), allow(dead_code))]
    pub(crate) fn finish_if_empty(mut self) -> Self {
        if self.inner.is_end_stream() {
            self.on_end = None;
        }
        self
    }
}

impl<B, T> BodyEnd<B, T> {
    /// Wraps `inner`, carrying `on_end` (if any) until it ends.
    #[inline]
    pub(crate) fn new(inner: B, on_end: Option<T>) -> Self {
        Self { inner, on_end }
    }

    /// Whether the body has ended (or never carried anything).
    pub(crate) fn is_finished(&self) -> bool {
        self.on_end.is_none()
    }

    /// Unwraps the inner body; what it carried finishes now.
    #[cfg_attr(not(feature = "correlation-id"), allow(dead_code))]
    pub(crate) fn into_inner(self) -> B {
        self.inner
    }
}

impl<B: Body, T: OnBodyEnd> Body for BodyEnd<B, T> {
    type Data = B::Data;
    type Error = B::Error;

    #[inline]
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = {
            let _polling = this.on_end.as_ref().map(T::polling);
            ready!(this.inner.as_mut().poll_frame(cx))
        };
        if let Some(on_end) = this.on_end.as_mut() {
            let ended = match &frame {
                Some(Ok(_)) => this.inner.is_end_stream(),
                Some(Err(_)) | None => true,
            };
            if let Some(frame) = &frame {
                on_end.frame(frame);
            }
            if ended {
                this.on_end.take();
            }
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

/// Implements `http_body::Body` for a public wrapper whose pinned field
/// `inner` is a [`BodyEnd`] (the layers' response bodies), by delegating
/// to it: `body_end_wrapper!(AccessLogBody<B> where B: http_body::Body)`.
macro_rules! body_end_wrapper {
    ($name:ident<$b:ident> where $($bound:tt)+) => {
        impl<$b> http_body::Body for $name<$b>
        where
            $($bound)+
        {
            type Data = <$b as http_body::Body>::Data;
            type Error = <$b as http_body::Body>::Error;

            #[inline]
            fn poll_frame(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
                self.project().inner.poll_frame(cx)
            }

            fn is_end_stream(&self) -> bool {
                self.inner.is_end_stream()
            }

            fn size_hint(&self) -> http_body::SizeHint {
                self.inner.size_hint()
            }
        }
    };
}
pub(crate) use body_end_wrapper;

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full, StreamBody};

    use super::*;

    /// Counts data bytes and how often it finished.
    struct Probe {
        bytes: Arc<AtomicUsize>,
        finished: Arc<AtomicUsize>,
        errors: Arc<AtomicUsize>,
    }

    impl OnBodyEnd for Probe {
        fn frame<D: Buf, E>(&mut self, frame: &Result<Frame<D>, E>) {
            match frame {
                Ok(frame) => {
                    let n = frame.data_ref().map_or(0, Buf::remaining);
                    self.bytes.fetch_add(n, Ordering::SeqCst);
                }
                Err(_) => {
                    self.errors.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }

    impl Drop for Probe {
        fn drop(&mut self) {
            self.finished.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn probe() -> (Probe, [Arc<AtomicUsize>; 3]) {
        let counters = [(); 3].map(|()| Arc::new(AtomicUsize::new(0)));
        let probe = Probe {
            bytes: Arc::clone(&counters[0]),
            finished: Arc::clone(&counters[1]),
            errors: Arc::clone(&counters[2]),
        };
        (probe, counters)
    }

    #[tokio::test]
    async fn finishes_once_at_the_last_frame() {
        let (probe, [bytes, finished, _]) = probe();
        let mut body = BodyEnd::new(Full::new(Bytes::from_static(b"hello")), Some(probe));
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "hello");
        // Full reports its end after its one frame: finished before `None`.
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert!(body.is_finished());
        assert!(body.frame().await.is_none());
        drop(body);
        assert_eq!(bytes.load(Ordering::SeqCst), 5);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_empty_body_finishes_at_once_when_asked() {
        let (probe, [_, finished, _]) = probe();
        let body = BodyEnd::new(Empty::<Bytes>::new(), Some(probe)).finish_if_empty();
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert!(body.is_finished());
    }

    #[tokio::test]
    async fn a_dropped_body_finishes() {
        let (probe, [bytes, finished, _]) = probe();
        let body = BodyEnd::new(Full::new(Bytes::from_static(b"unread")), Some(probe));
        assert_eq!(finished.load(Ordering::SeqCst), 0);
        drop(body);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert_eq!(bytes.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn an_error_frame_is_seen_and_finishes() {
        let (probe, [bytes, finished, errors]) = probe();
        let frames = tokio_stream::iter(vec![
            Ok(Frame::data(Bytes::from_static(b"ab"))),
            Err("reset"),
            Ok(Frame::data(Bytes::from_static(b"never"))),
        ]);
        let mut body = BodyEnd::new(StreamBody::new(frames), Some(probe));
        body.frame().await.unwrap().unwrap();
        assert_eq!(finished.load(Ordering::SeqCst), 0, "a stream may go on");
        assert!(body.frame().await.unwrap().is_err());
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert_eq!(errors.load(Ordering::SeqCst), 1);
        // Frames after the end pass through, seen by nobody.
        body.frame().await.unwrap().unwrap();
        assert_eq!(bytes.load(Ordering::SeqCst), 2);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn into_inner_finishes_and_returns_the_body() {
        let (probe, [_, finished, _]) = probe();
        let body = BodyEnd::new(Full::new(Bytes::from_static(b"x")), Some(probe));
        let inner = body.into_inner();
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        assert_eq!(inner.collect().await.unwrap().to_bytes(), "x");
    }
}
