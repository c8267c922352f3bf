//! The body types of the layer: the request body the handler reads (the
//! buffered copy of an idempotent request, else the original), and the
//! response body (the handler's, a replay, or an answer of the layer).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::body::ResponseBody;

pin_project! {
    /// The request body the inner service receives: the original body, or,
    /// for a request the layer fingerprinted, the bytes (and trailers) it
    /// buffered.
    pub struct RequestBody<B> {
        #[pin]
        kind: ReqKind<B>,
    }
}

pin_project! {
    #[project = ReqKindProj]
    enum ReqKind<B> {
        Inner { #[pin] body: B },
        Buffered { data: Option<Bytes>, trailers: Option<HeaderMap> },
    }
}

impl<B> RequestBody<B> {
    /// The original body, passed through.
    pub fn new(body: B) -> Self {
        Self {
            kind: ReqKind::Inner { body },
        }
    }

    /// A buffered body.
    pub fn buffered(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: ReqKind::Buffered {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }
}

impl<B> std::fmt::Debug for RequestBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.kind {
            ReqKind::Inner { .. } => f.write_str("RequestBody::Inner"),
            ReqKind::Buffered { data, .. } => f
                .debug_struct("RequestBody::Buffered")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

fn full_frame<E>(
    data: &mut Option<Bytes>,
    trailers: &mut Option<HeaderMap>,
) -> Poll<Option<Result<Frame<Bytes>, E>>> {
    if let Some(data) = data.take() {
        return Poll::Ready(Some(Ok(Frame::data(data))));
    }
    Poll::Ready(trailers.take().map(|t| Ok(Frame::trailers(t))))
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            ReqKindProj::Inner { body } => body.poll_frame(cx),
            ReqKindProj::Buffered { data, trailers } => full_frame(data, trailers),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            ReqKind::Inner { body } => body.is_end_stream(),
            ReqKind::Buffered { data, trailers } => data.is_none() && trailers.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            ReqKind::Inner { body } => body.size_hint(),
            ReqKind::Buffered { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}

pin_project! {
    /// The response body of the idempotency layer: the handler's (streamed,
    /// or buffered to be stored), a replay, or an answer of the layer.
    ///
    /// It implements [`http_body::Body`] with the handler body's `Error`.
    pub struct IdempotencyBody<B: Body> {
        #[pin]
        kind: ResKind<B>,
    }
}

pin_project! {
    #[project = ResKindProj]
    enum ResKind<B: Body> {
        Edge { #[pin] body: ResponseBody<B> },
        Full { data: Option<Bytes>, trailers: Option<HeaderMap> },
        // What was read of an over-cap or failing body, then the rest.
        Resumed { prefix: Option<Bytes>, rest: Pin<Box<B>> },
        Failed { prefix: Option<Bytes>, error: Option<B::Error> },
    }
}

impl<B: Body> IdempotencyBody<B> {
    pub(crate) fn edge(body: ResponseBody<B>) -> Self {
        Self {
            kind: ResKind::Edge { body },
        }
    }

    pub(crate) fn inner(body: B) -> Self {
        Self::edge(ResponseBody::new(body))
    }

    pub(crate) fn full(data: Bytes, trailers: Option<HeaderMap>) -> Self {
        Self {
            kind: ResKind::Full {
                data: (!data.is_empty()).then_some(data),
                trailers,
            },
        }
    }

    pub(crate) fn resumed(prefix: Bytes, rest: Pin<Box<B>>) -> Self {
        Self {
            kind: ResKind::Resumed {
                prefix: (!prefix.is_empty()).then_some(prefix),
                rest,
            },
        }
    }

    pub(crate) fn failed(prefix: Bytes, error: B::Error) -> Self {
        Self {
            kind: ResKind::Failed {
                prefix: (!prefix.is_empty()).then_some(prefix),
                error: Some(error),
            },
        }
    }
}

impl<B: Body> std::fmt::Debug for IdempotencyBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match &self.kind {
            ResKind::Edge { .. } => "IdempotencyBody::Edge",
            ResKind::Full { .. } => "IdempotencyBody::Full",
            ResKind::Resumed { .. } => "IdempotencyBody::Resumed",
            ResKind::Failed { .. } => "IdempotencyBody::Failed",
        })
    }
}

impl<B> Body for IdempotencyBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.project().kind.project() {
            ResKindProj::Edge { body } => body.poll_frame(cx),
            ResKindProj::Full { data, trailers } => full_frame(data, trailers),
            ResKindProj::Resumed { prefix, rest } => match prefix.take() {
                Some(prefix) => Poll::Ready(Some(Ok(Frame::data(prefix)))),
                None => rest.as_mut().poll_frame(cx),
            },
            ResKindProj::Failed { prefix, error } => match prefix.take() {
                Some(prefix) => Poll::Ready(Some(Ok(Frame::data(prefix)))),
                None => Poll::Ready(error.take().map(Err)),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            ResKind::Edge { body } => body.is_end_stream(),
            ResKind::Full { data, trailers } => data.is_none() && trailers.is_none(),
            ResKind::Resumed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            ResKind::Failed { prefix, error } => prefix.is_none() && error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            ResKind::Edge { body } => body.size_hint(),
            ResKind::Full { data, .. } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            ResKind::Resumed { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |p| p.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
            ResKind::Failed { .. } => SizeHint::new(),
        }
    }
}
