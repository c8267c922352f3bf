//! The response side of [`AccessLog`](super::AccessLog): what the line
//! says, gathered at the request, the response head and the end of the
//! body, and written once, when the request is over.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use bytes::Buf;
use http::{Extensions, Method, Response, StatusCode};
use pin_project_lite::pin_project;

use crate::body_end::{BodyEnd, OnBodyEnd, body_end_wrapper};
use crate::correlation::CorrelationId;
use crate::decision::Decision;

/// The route template of a request, when a router or a layer named it.
pub(super) fn request_route(extensions: &Extensions) -> Option<Arc<str>> {
    #[cfg(feature = "otel")]
    if let Some(route) = extensions.get::<crate::otel::Route>() {
        return Some(Arc::from(route.as_str()));
    }
    #[cfg(feature = "axum")]
    if let Some(matched) = extensions.get::<axum::extract::MatchedPath>() {
        return Some(Arc::from(matched.as_str()));
    }
    let _ = extensions;
    None
}

/// What is known when the request enters the layer.
pub(super) struct Entry {
    pub(super) start: Instant,
    pub(super) method: Method,
    pub(super) route: Option<Arc<str>>,
    pub(super) correlation_id: Option<CorrelationId>,
    pub(super) client_ip: Option<IpAddr>,
    /// The span current at the request (the correlation layer's `request`
    /// span): the line is logged inside it.
    pub(super) span: tracing::Span,
    /// The OpenTelemetry context current at the request (the server span).
    #[cfg(feature = "otel")]
    pub(super) otel_cx: opentelemetry::Context,
}

/// The line, written when dropped: at the end of the body, when the body is
/// dropped, or when the request ends without a response head.
struct Line {
    entry: Entry,
    status: Option<StatusCode>,
    decision: Option<Decision>,
    bytes: u64,
    body_failed: bool,
}

impl Drop for Line {
    fn drop(&mut self) {
        let entry = &self.entry;
        #[cfg(feature = "otel")]
        let _attached = entry.otel_cx.clone().attach();
        let _entered = entry.span.enter();
        #[cfg(feature = "otel")]
        let (trace_id, span_id) = {
            use opentelemetry::trace::TraceContextExt;
            let span = entry.otel_cx.span();
            let context = span.span_context();
            if context.is_valid() {
                (
                    Some(tracing::field::display(context.trace_id())),
                    Some(tracing::field::display(context.span_id())),
                )
            } else {
                (None, None)
            }
        };
        #[cfg(not(feature = "otel"))]
        let (trace_id, span_id): (Option<&str>, Option<&str>) = (None, None);
        // Whole microseconds: no float noise (`1.0359589999999999`).
        let duration_ms = entry.start.elapsed().as_micros() as f64 / 1000.0;
        let decision = self.decision.as_ref();
        tracing::event!(
            target: "tower_edge::access_log",
            tracing::Level::INFO,
            http.request.method = entry.method.as_str(),
            http.route = entry.route.as_deref(),
            http.response.status_code = self.status.map(|status| status.as_u16()),
            duration_ms,
            http.response.body.size = self.bytes,
            correlation_id = entry.correlation_id.as_ref().map(CorrelationId::as_str),
            trace_id,
            span_id,
            tower_edge.layer = decision.map(|d| d.layer().as_str()),
            tower_edge.reason = decision.map(|d| d.reason().as_str()),
            tower_edge.policy = decision.and_then(Decision::policy),
            client.address = entry.client_ip.map(tracing::field::display),
            body.error = self.body_failed.then_some(true),
            "request completed"
        );
    }
}

impl OnBodyEnd for Line {
    fn frame<D: Buf, E>(&mut self, frame: &Result<http_body::Frame<D>, E>) {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    self.bytes = self.bytes.saturating_add(data.remaining() as u64);
                }
            }
            Err(_) => self.body_failed = true,
        }
    }
}

pin_project! {
    /// Response body of [`AccessLog`](super::AccessLog): the inner body,
    /// unchanged, its data frames counted. The access-log line is written
    /// when it ends or is dropped.
    pub struct AccessLogBody<B> {
        #[pin]
        inner: BodyEnd<B, Line>,
    }
}

impl<B> AccessLogBody<B> {
    /// Unwraps the inner body; the line is written now.
    pub fn into_inner(self) -> B {
        self.inner.into_inner()
    }
}

impl<B> fmt::Debug for AccessLogBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessLogBody")
            .field("finished", &self.inner.is_finished())
            .finish_non_exhaustive()
    }
}

body_end_wrapper!(AccessLogBody<B> where B: http_body::Body);

pin_project! {
    /// Response future of [`AccessLog`](super::AccessLog).
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        entry: Option<Entry>,
        // This layer opened the `request` span: entered for every poll.
        enter_span: bool,
    }

    impl<F> PinnedDrop for ResponseFuture<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the response head: the line says so (no status).
            if let Some(entry) = this.project().entry.take() {
                drop(Line { entry, status: None, decision: None, bytes: 0, body_failed: false });
            }
        }
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, entry: Entry, enter_span: bool) -> Self {
        Self {
            inner,
            entry: Some(entry),
            enter_span,
        }
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("finished", &self.entry.is_none())
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<AccessLogBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this
                .entry
                .as_ref()
                .filter(|_| *this.enter_span)
                .map(|entry| entry.span.enter());
            ready!(this.inner.poll(cx))
        };
        let entry = this.entry.take();
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                // No response: the line has no status and says the body
                // (here, the whole answer) failed.
                if let Some(entry) = entry {
                    drop(Line {
                        entry,
                        status: None,
                        decision: None,
                        bytes: 0,
                        body_failed: true,
                    });
                }
                return Poll::Ready(Err(error));
            }
        };
        Poll::Ready(Ok({
            let (parts, inner) = response.into_parts();
            let line = entry.map(|mut entry| {
                if entry.route.is_none() {
                    entry.route = request_route(&parts.extensions);
                }
                Line {
                    entry,
                    status: Some(parts.status),
                    decision: parts.extensions.get::<Decision>().cloned(),
                    bytes: 0,
                    body_failed: false,
                }
            });
            // An empty body (a 304, a rejection without a body) may never
            // be polled: `BodyEnd` writes its line at once.
            let inner = BodyEnd::new(inner, line).finish_if_empty();
            Response::from_parts(parts, AccessLogBody { inner })
        }))
    }
}
