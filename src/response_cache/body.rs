//! The response body of the cache: the handler's body streamed through
//! (a copy kept while it stays under the entry cap, stored when it ends),
//! or a stored body.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::engine::Engine;
use super::entry::Entry;
use super::flight::FlightGuard;
use super::remote_fill::RemoteFill;
use crate::cache_headers::ETag;
use http::header::ETAG;

pin_project! {
    /// Response body of [`ResponseCache`](super::ResponseCache): the
    /// handler's body passed through frame by frame (never held back; a
    /// copy is kept only while it stays under the entry cap), or a stored
    /// body served from the cache.
    pub struct CacheBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Inner { #[pin] body: B, fill: Option<Box<Fill>> },
        Stored { data: Option<Bytes> },
    }
}

/// A response being copied into the cache.
pub(crate) struct Fill {
    /// The entry, body still empty.
    pub(crate) entry: Entry,
    pub(crate) chunks: Vec<Bytes>,
    pub(crate) len: usize,
    pub(crate) cap: usize,
    pub(crate) engine: Arc<Engine>,
    /// Ends the fill (waking the waiters) once the entry is stored or the
    /// fill given up.
    pub(crate) guard: Option<FlightGuard>,
    /// Give the entry a strong `ETag` of its body when it has none (the
    /// same xxh3 tag the cache-headers layer makes, so both agree).
    pub(crate) make_etag: bool,
    /// Store in Redis too, and the fill lease held (released if unused).
    pub(crate) remote: RemoteFill,
}

impl Fill {
    /// Keeps a copy of `data` (a reference count, no copy of the bytes);
    /// false once past the cap.
    fn push(&mut self, data: &Bytes) -> bool {
        self.len += data.len();
        if self.len > self.cap {
            return false;
        }
        if !data.is_empty() {
            self.chunks.push(data.clone());
        }
        true
    }

    /// The body ended: store the entry, then end the fill.
    fn complete(self: Box<Self>) {
        let Fill {
            mut entry,
            chunks,
            len,
            engine,
            guard,
            make_etag,
            remote,
            ..
        } = *self;
        entry.body = match chunks.len() {
            0 => Bytes::new(),
            1 => chunks.into_iter().next().unwrap_or_default(),
            _ => {
                let mut all = BytesMut::with_capacity(len);
                for chunk in chunks {
                    all.extend_from_slice(&chunk);
                }
                all.freeze()
            }
        };
        entry.size += len;
        if make_etag && entry.etag.is_none() {
            let etag = ETag::from_content(&entry.body);
            entry.headers.insert(ETAG, etag.header_value().clone());
            entry.etag = Some(etag);
        }
        engine.store(entry, remote.take_for_store());
        drop(guard);
    }
}

impl<B> CacheBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner { body, fill: None },
        }
    }

    pub(crate) fn filling(body: B, fill: Box<Fill>) -> Self {
        Self {
            kind: Kind::Inner {
                body,
                fill: Some(fill),
            },
        }
    }

    pub(crate) fn stored(data: Bytes) -> Self {
        Self {
            kind: Kind::Stored {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }

    pub(crate) fn empty() -> Self {
        Self {
            kind: Kind::Stored { data: None },
        }
    }
}

impl<B> fmt::Debug for CacheBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Inner { fill, .. } => f
                .debug_struct("CacheBody::Inner")
                .field("filling", &fill.is_some())
                .finish(),
            Kind::Stored { data } => f
                .debug_struct("CacheBody::Stored")
                .field("len", &data.as_ref().map_or(0, Bytes::len))
                .finish(),
        }
    }
}

impl<B> Body for CacheBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        match self.project().kind.project() {
            KindProj::Stored { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            KindProj::Inner { mut body, fill } => {
                let frame = match body.as_mut().poll_frame(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(frame) => frame,
                };
                let ended = match &frame {
                    Some(Ok(frame)) => {
                        let keep = match frame.data_ref() {
                            Some(data) => fill.as_mut().is_some_and(|f| f.push(data)),
                            // Trailers are not stored: nor is the response.
                            None => false,
                        };
                        if !keep {
                            *fill = None;
                        }
                        // A server stops polling once the body says it
                        // ended: store then.
                        body.is_end_stream()
                    }
                    // An error: the response is incomplete.
                    Some(Err(_)) => {
                        *fill = None;
                        false
                    }
                    None => true,
                };
                if ended && let Some(fill) = fill.take() {
                    fill.complete();
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner { body, .. } => body.is_end_stream(),
            Kind::Stored { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner { body, .. } => body.size_hint(),
            Kind::Stored { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
