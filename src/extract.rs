//! axum extractors for the values our layers put in request extensions
//! (feature `axum`).
//!
//! Each value a layer inserts can be taken as a handler argument, either
//! required (the request is answered with a 500 problem when the layer that
//! provides it is not installed: a server misconfiguration, not a client
//! error) or as an `Option`.

use std::fmt;

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;

use crate::rejection::{Problem, Rejections};

/// Rejection of an extractor whose value no layer provided: the layer that
/// inserts it is missing from the stack (or sits inside the route).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingExtension {
    type_name: &'static str,
    layer: &'static str,
}

impl MissingExtension {
    pub(crate) const fn new(type_name: &'static str, layer: &'static str) -> Self {
        Self { type_name, layer }
    }
}

impl fmt::Display for MissingExtension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is missing from the request extensions: is `{}` installed around this route?",
            self.type_name, self.layer
        )
    }
}

impl std::error::Error for MissingExtension {}

impl IntoResponse for MissingExtension {
    fn into_response(self) -> Response {
        tracing::error!(%self, "extractor used without its layer");
        let problem = Problem::new(StatusCode::INTERNAL_SERVER_ERROR)
            .with_detail("the server is misconfigured");
        Rejections::default()
            .http_response::<axum_core::body::Body>(problem)
            .map(axum_core::body::Body::new)
    }
}

/// Implements `FromRequestParts` and `OptionalFromRequestParts` for a
/// `Clone` type that a layer puts in the request extensions.
macro_rules! extension_extractor {
    ($ty:ty, $layer:literal) => {
        impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for $ty {
            type Rejection = $crate::extract::MissingExtension;

            async fn from_request_parts(
                parts: &mut http::request::Parts,
                _state: &S,
            ) -> Result<Self, Self::Rejection> {
                parts.extensions.get::<$ty>().cloned().ok_or(
                    $crate::extract::MissingExtension::new(stringify!($ty), $layer),
                )
            }
        }

        impl<S: Send + Sync> axum_core::extract::OptionalFromRequestParts<S> for $ty {
            type Rejection = std::convert::Infallible;

            async fn from_request_parts(
                parts: &mut http::request::Parts,
                _state: &S,
            ) -> Result<Option<Self>, Self::Rejection> {
                Ok(parts.extensions.get::<$ty>().cloned())
            }
        }
    };
}
pub(crate) use extension_extractor;
