//! The `request` span that carries the correlation ID, and how it is left
//! to an [`OtelLayer`](crate::otel::OtelLayer) stacked inside, so that it
//! joins the server span's trace.
//!
//! `tracing-opentelemetry` (with context activation) parents a new span on
//! the OpenTelemetry context current when the span is *created*. Opened by
//! the correlation layer, before the OTel layer has made the server span,
//! the `request` span would start a trace of its own. So with feature
//! `otel` the correlation layer puts a [`SpanHandoff`] in the request
//! extensions; an OTel layer inside claims it and opens the span itself
//! while the server span is current (a child of it, in its trace). Without
//! one, the access log claims it. When nobody claims it during the inner
//! `call`, the correlation layer opens the span itself.

#[cfg(feature = "otel")]
use std::sync::Arc;
#[cfg(feature = "otel")]
use std::sync::atomic::{AtomicU8, Ordering};

use http::{Method, Request};
use tracing::Span;

use super::CorrelationId;
#[cfg(feature = "otel")]
use super::{ResponseFuture, SetCorrelationId, id};
#[cfg(feature = "otel")]
use http::Response;
#[cfg(feature = "otel")]
use tower_service::Service;

/// The `request` span: ERROR level so that no level filter drops it (a
/// filtered-out span is not entered, and the lines under it would lose the
/// ID), target `tower_edge::correlation`.
///
/// The ID and the path are `&str` fields: the subscriber gets them as
/// strings (`fmt` quotes and escapes them, OpenTelemetry keeps them as
/// string attributes); only the method uses Display, and a method is a
/// token (RFC 9110 §9.1; `http` refuses any other byte), so it cannot carry
/// a line break or an escape. `route` and `subject` are declared empty, to
/// be recorded by the layers that learn them (the OTel layer, the access
/// log, the authentication layer): recording a field a span does not
/// declare does nothing, so they must be declared here.
pub(crate) fn request_span(id: &CorrelationId, method: &Method, path: &str) -> Span {
    tracing::error_span!(
        "request",
        correlation_id = id.as_str(),
        method = %method,
        path = path,
        route = tracing::field::Empty,
        subject = tracing::field::Empty,
    )
}

/// Left in the request extensions by the correlation layer (feature
/// `otel`); an OTel layer inside takes it and opens the `request` span.
#[cfg(feature = "otel")]
#[derive(Clone, Debug)]
pub(crate) struct SpanHandoff(Arc<AtomicU8>);

#[cfg(feature = "otel")]
const OPEN: u8 = 0;
#[cfg(feature = "otel")]
const CLAIMED: u8 = 1;
#[cfg(feature = "otel")]
const CLOSED: u8 = 2;

#[cfg(feature = "otel")]
impl SpanHandoff {
    pub(crate) fn new() -> Self {
        Self(Arc::new(AtomicU8::new(OPEN)))
    }

    /// The OTel layer would open the span: `true` if the correlation layer
    /// has not opened its own yet (it then never will).
    pub(crate) fn claim(&self) -> bool {
        self.0
            .compare_exchange(OPEN, CLAIMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// The correlation layer, once the inner service's `call` returned:
    /// `true` if nobody claimed the span (so it opens its own, and a later
    /// claim, by an OTel layer called from a future, fails).
    pub(crate) fn close(&self) -> bool {
        self.0
            .compare_exchange(OPEN, CLOSED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

/// Opens the `request` span if the correlation layer outside left it in
/// `request`'s extensions and nobody took it yet: the first tower-edge
/// layer inside that can (the OTel layer, else the access log) opens it,
/// while what it knows is current. `None` otherwise.
#[cfg(feature = "otel")]
pub(crate) fn open_handed_off<B>(request: &mut Request<B>) -> Option<Span> {
    let handoff = request.extensions_mut().remove::<SpanHandoff>()?;
    let id = request.extensions().get::<CorrelationId>()?;
    handoff
        .claim()
        .then(|| request_span(id, request.method(), request.uri().path()))
}

/// Without feature `otel` nothing is handed off.
#[cfg(not(feature = "otel"))]
pub(crate) fn open_handed_off<B>(_request: &mut Request<B>) -> Option<Span> {
    None
}

#[cfg(feature = "otel")]
impl<S> SetCorrelationId<S> {
    /// Offers the `request` span to an OTel layer inside (see
    /// this module); opens it here if none took it during the
    /// inner `call`.
    pub(super) fn call_deferred<ReqBody, ResBody>(
        &mut self,
        mut request: Request<ReqBody>,
        id: CorrelationId,
    ) -> ResponseFuture<S::Future>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let handoff = SpanHandoff::new();
        request.extensions_mut().insert(handoff.clone());
        // Kept for the fallback span: both clones are cheap (a standard
        // method is inline, a URI shares its bytes).
        let (method, uri) = (request.method().clone(), request.uri().clone());
        let mut slot = Some(id.clone());
        let inner = &mut self.inner;
        let future = id::enter(&mut slot, || inner.call(request));
        let span = if handoff.close() {
            request_span(&id, &method, uri.path())
        } else {
            Span::none()
        };
        ResponseFuture {
            inner: future,
            span,
            id: slot,
            header: self.config.header.clone(),
        }
    }
}
