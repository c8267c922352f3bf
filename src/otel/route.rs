//! The route template of a request: our own [`Route`] extension, axum's
//! `MatchedPath` (feature `axum`) or a user hook.

use std::fmt;
use std::sync::Arc;

use http::{Extensions, HeaderMap, Method, Request, Uri};
use opentelemetry::Value;

/// The low-cardinality route template a request matched, such as
/// `/users/{id}`: it names the server span (`GET /users/{id}`) and is the
/// `http.route` attribute of spans and metrics.
///
/// The [`OtelLayer`](super::OtelLayer) looks for it, in order:
///
/// 1. a `Route` in the **request** extensions (put there by your router or
///    a layer of your own);
/// 2. axum's `MatchedPath` in the request extensions (feature `axum`; it is
///    there when the layer is added with `Router::layer` or `route_layer`);
/// 3. the hook given to [`OtelLayerBuilder::route_with`](super::OtelLayerBuilder::route_with);
/// 4. a `Route` in the **response** extensions, so a handler or an inner
///    layer can name the route after routing (the span is renamed then).
///
/// The route found from 2 or 3 is put in the request extensions as a
/// `Route`, for the layers inside (the access log's `http.route`).
///
/// When none is found the span is named after the method alone (`GET`): the
/// raw path is never used, so path parameters cannot explode the number of
/// span names or metric series.
///
/// Cloning is cheap (a static string or a reference-counted one).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Route(Repr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Route {
    /// A route template known at compile time; allocates nothing.
    pub const fn from_static(template: &'static str) -> Self {
        Self(Repr::Static(template))
    }

    /// A route template built at run time.
    pub fn new(template: impl Into<Arc<str>>) -> Self {
        Self(Repr::Shared(template.into()))
    }

    /// The template as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        match &self.0 {
            Repr::Static(s) => Value::from(*s),
            Repr::Shared(s) => Value::from(Arc::clone(s)),
        }
    }
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Route").field(&self.as_str()).finish()
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for Route {
    fn from(template: &'static str) -> Self {
        Self::from_static(template)
    }
}

impl From<String> for Route {
    fn from(template: String) -> Self {
        Self::new(template)
    }
}

/// The parts of a request a [`MakeRoute`] hook may look at.
#[derive(Debug, Clone, Copy)]
pub struct RequestHead<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    extensions: &'a Extensions,
}

impl<'a> RequestHead<'a> {
    pub(crate) fn of<B>(request: &'a Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// The request method.
    pub fn method(&self) -> &'a Method {
        self.method
    }

    /// The request target.
    pub fn uri(&self) -> &'a Uri {
        self.uri
    }

    /// The request headers.
    pub fn headers(&self) -> &'a HeaderMap {
        self.headers
    }

    /// The request extensions.
    pub fn extensions(&self) -> &'a Extensions {
        self.extensions
    }
}

/// Finds the route template of a request when neither a [`Route`] extension
/// nor axum's `MatchedPath` names it (for a hand-written hyper router, say).
///
/// Implemented for closures `Fn(&RequestHead<'_>) -> Option<Route>`. There
/// is no default hook: without one, such requests are named after their
/// method. The hook must return a *template*, never the raw path.
pub trait MakeRoute: Send + Sync + 'static {
    /// The route template of `request`, if known.
    fn make_route(&self, request: &RequestHead<'_>) -> Option<Route>;
}

impl<F> MakeRoute for F
where
    F: Fn(&RequestHead<'_>) -> Option<Route> + Send + Sync + 'static,
{
    fn make_route(&self, request: &RequestHead<'_>) -> Option<Route> {
        self(request)
    }
}

/// Steps 1 to 3 of the lookup described on [`Route`].
pub(crate) fn request_route(head: &RequestHead<'_>, hook: Option<&dyn MakeRoute>) -> Option<Route> {
    if let Some(route) = head.extensions.get::<Route>() {
        return Some(route.clone());
    }
    #[cfg(feature = "axum")]
    if let Some(matched) = head.extensions.get::<axum::extract::MatchedPath>() {
        return Some(Route::new(matched.as_str()));
    }
    hook.and_then(|hook| hook.make_route(head))
}
