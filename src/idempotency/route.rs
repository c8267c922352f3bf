//! Which requests the layer applies to: methods and routes, and whether
//! the key is required on them.

use http::Method;

/// A route the layer applies to (see
/// [`IdempotencyLayerBuilder::route`](super::IdempotencyLayerBuilder::route)):
/// a path, exact or a prefix, the methods (the layer's by default) and
/// whether the key is required (by default, on a route you name).
///
/// ```
/// use http::Method;
/// use tower_edge::idempotency::Route;
///
/// let orders = Route::prefix("/orders"); // POST and PATCH, key required
/// let notes = Route::exact("/notes").key_optional().methods([Method::POST, Method::PUT]);
/// # let _ = (orders, notes);
/// ```
#[derive(Debug, Clone)]
pub struct Route {
    path: Box<str>,
    prefix: bool,
    pub(crate) methods: Option<Vec<Method>>,
    pub(crate) required: bool,
}

impl Route {
    /// Requests whose path is `path` exactly (a gRPC method:
    /// `/package.Service/Method`).
    pub fn exact(path: impl Into<String>) -> Self {
        Self {
            path: path.into().into_boxed_str(),
            prefix: false,
            methods: None,
            required: true,
        }
    }

    /// Requests whose path is `path` or below it (`/orders` matches
    /// `/orders` and `/orders/7`, not `/ordersx`).
    pub fn prefix(path: impl Into<String>) -> Self {
        let mut path: String = path.into();
        while path.len() > 1 && path.ends_with('/') {
            path.pop();
        }
        Self {
            path: path.into_boxed_str(),
            prefix: true,
            methods: None,
            required: true,
        }
    }

    /// The methods of this route (default: the layer's
    /// [`methods`](super::IdempotencyLayerBuilder::methods)).
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// A request without `Idempotency-Key` is answered 400 (the default
    /// for a named route; draft-07 §2.7).
    pub fn key_required(mut self) -> Self {
        self.required = true;
        self
    }

    /// A request without `Idempotency-Key` runs as usual, without
    /// idempotency.
    pub fn key_optional(mut self) -> Self {
        self.required = false;
        self
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }

    pub(crate) fn matches_path(&self, path: &str) -> bool {
        if !self.prefix {
            return path == &*self.path;
        }
        if self.path.as_ref() == "/" {
            return true;
        }
        path.strip_prefix(&*self.path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        let r = Route::prefix("/orders/");
        assert!(r.matches_path("/orders"));
        assert!(r.matches_path("/orders/7"));
        assert!(!r.matches_path("/ordersx"));
        assert!(!r.matches_path("/"));
        assert!(Route::prefix("/").matches_path("/anything"));
        let e = Route::exact("/pkg.Svc/Do");
        assert!(e.matches_path("/pkg.Svc/Do"));
        assert!(!e.matches_path("/pkg.Svc/Do/x"));
    }
}
