//! axum extractors for the values our layers put in request extensions
//! (feature `axum`).
//!
//! Each value a layer inserts can be taken as a handler argument, either
//! required (the request is answered with a 500 problem when the layer that
//! provides it is not installed: a server misconfiguration, not a client
//! error) or as an `Option`.
//!
//! What authentication provides ([`Claims`](crate::jwt_auth::Claims),
//! [`Scopes`], [`Subject`]) is
//! rejected with [`AuthRejection`]: 401 with the authentication layer's
//! challenge when that layer let the request through without it (optional
//! mode and no token; for `Subject`, also a token without `sub`), 500 only
//! when no layer provided it.

use std::fmt;

use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use http::{HeaderValue, StatusCode};

use crate::Subject;
#[cfg(feature = "correlation-id")]
use crate::correlation::CorrelationId;
use crate::decision::{Decision, EdgeLayer, Reason};
#[cfg(feature = "jwt-auth")]
use crate::jwt_auth::Scopes;
use crate::rejection::{Problem, Rejections, token_required};

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

/// Rejection of the extractors of what authentication provides:
/// [`Claims`](crate::jwt_auth::Claims), [`Scopes`]
/// and [`Subject`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuthRejection {
    /// The authentication layer let the request through anonymously
    /// (optional mode). 401 with the layer's `WWW-Authenticate` challenge
    /// (RFC 6750 §3: no `error` attribute).
    Unauthenticated(AuthChallenge),
    /// For `Subject`: the request carries a valid token without `sub`. 401
    /// with the layer's challenge, `error="invalid_token"` (RFC 6750 §3: the
    /// token is invalid for this use; sending no token would not help).
    NoSubject(AuthChallenge),
    /// No layer provided the value: a server misconfiguration, answered
    /// with 500.
    Missing(MissingExtension),
}

impl fmt::Display for AuthRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unauthenticated(_) => f.write_str("the request is not authenticated"),
            Self::NoSubject(_) => f.write_str("the access token has no subject"),
            Self::Missing(missing) => missing.fmt(f),
        }
    }
}

impl std::error::Error for AuthRejection {}

impl IntoResponse for AuthRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Unauthenticated(answer) => answer.respond(token_required),
            Self::NoSubject(answer) => answer.respond(|challenge| {
                Problem::new(StatusCode::UNAUTHORIZED)
                    .with_detail("the access token has no subject")
                    .with_header(http::header::WWW_AUTHENTICATE, challenge)
                    .with_decision(Decision::new(EdgeLayer::JwtAuth, Reason::InvalidToken))
            }),
            Self::Missing(missing) => missing.into_response(),
        }
    }
}

/// How the authentication layer answers a request it let through without
/// what an extractor needs: its `WWW-Authenticate` challenge, rendered
/// with that layer's [`Rejections`] (a custom body keeps the challenge), as
/// a trailers-only gRPC status 16 when the request is gRPC.
#[derive(Debug, Clone)]
pub struct AuthChallenge {
    challenge: HeaderValue,
    rejections: Rejections,
    grpc_content_type: Option<HeaderValue>,
}

impl AuthChallenge {
    #[cfg(feature = "jwt-auth")]
    pub(crate) fn new(
        challenge: HeaderValue,
        rejections: Rejections,
        request: &http::request::Parts,
    ) -> Self {
        Self {
            challenge,
            rejections,
            grpc_content_type: crate::rejection::grpc_content_type(
                request.version,
                &request.headers,
            )
            .cloned(),
        }
    }

    /// The `WWW-Authenticate` value the response carries.
    pub fn www_authenticate(&self) -> &HeaderValue {
        &self.challenge
    }

    /// The response for the problem `problem` makes of the challenge.
    fn respond(self, problem: impl FnOnce(HeaderValue) -> Problem) -> Response {
        self.rejections
            .respond_as::<axum_core::body::Body>(problem(self.challenge), self.grpc_content_type)
            .map(axum_core::body::Body::new)
    }
}

/// `X` from the request extensions; else 401 when the authentication layer
/// let the request through without it (for a subject: also when the token
/// has no `sub`), else `missing` (500).
pub(crate) fn authenticated<X: Clone + Send + Sync + 'static>(
    parts: &Parts,
    subject: bool,
    missing: MissingExtension,
) -> Result<X, AuthRejection> {
    if let Some(value) = parts.extensions.get::<X>() {
        return Ok(value.clone());
    }
    Err(challenge(parts, subject).unwrap_or(AuthRejection::Missing(missing)))
}

/// The rejection for a request an authentication layer let through
/// without what an extractor needs: anonymously, or (when `subject` is
/// needed) with a token that names no subject. `None`: no layer ran.
#[cfg(feature = "jwt-auth")]
fn challenge(parts: &Parts, subject: bool) -> Option<AuthRejection> {
    use crate::principal::{Anonymous, AuthAnswers, NoSubject};
    let answer = |answers: &AuthAnswers, challenge: &HeaderValue| {
        AuthChallenge::new(challenge.clone(), answers.rejections.clone(), parts)
    };
    if let Some(Anonymous(answers)) = parts.extensions.get::<Anonymous>() {
        return Some(AuthRejection::Unauthenticated(answer(
            answers,
            &answers.missing,
        )));
    }
    if subject {
        return parts
            .extensions
            .get::<NoSubject>()
            .map(|NoSubject(answers)| {
                AuthRejection::NoSubject(answer(answers, &answers.no_subject))
            });
    }
    None
}

/// Without the JWT layer, nothing lets a request through unauthenticated.
#[cfg(not(feature = "jwt-auth"))]
fn challenge(_: &Parts, _subject: bool) -> Option<AuthRejection> {
    None
}

/// Implements `FromRequestParts` and `OptionalFromRequestParts` for a
/// `Clone` type that a layer puts in the request extensions. With
/// `authenticated` (and `subject` for the subject), the required form
/// rejects with [`AuthRejection`], else with [`MissingExtension`].
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

        extension_extractor!(@optional $ty);
    };
    ($ty:ty, $layer:literal, authenticated) => {
        extension_extractor!(@authenticated $ty, $layer, false);
    };
    ($ty:ty, $layer:literal, authenticated subject) => {
        extension_extractor!(@authenticated $ty, $layer, true);
    };
    (@authenticated $ty:ty, $layer:literal, $subject:literal) => {
        impl<S: Send + Sync> axum_core::extract::FromRequestParts<S> for $ty {
            type Rejection = $crate::extract::AuthRejection;

            async fn from_request_parts(
                parts: &mut http::request::Parts,
                _state: &S,
            ) -> Result<Self, Self::Rejection> {
                $crate::extract::authenticated(
                    parts,
                    $subject,
                    $crate::extract::MissingExtension::new(stringify!($ty), $layer),
                )
            }
        }

        extension_extractor!(@optional $ty);
    };
    (@optional $ty:ty) => {
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

extension_extractor!(
    Subject,
    "JwtAuthLayer (or your own authentication)",
    authenticated subject
);

#[cfg(feature = "correlation-id")]
extension_extractor!(CorrelationId, "CorrelationIdLayer");

#[cfg(feature = "jwt-auth")]
extension_extractor!(Scopes, "JwtAuthLayer", authenticated);

#[cfg(feature = "jwt-auth")]
mod claims {
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::request::Parts;

    use super::{AuthRejection, MissingExtension, authenticated};
    use crate::jwt_auth::Claims;

    impl<T, S> FromRequestParts<S> for Claims<T>
    where
        T: Send + Sync + 'static,
        S: Send + Sync,
    {
        type Rejection = AuthRejection;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Self, Self::Rejection> {
            authenticated(
                parts,
                false,
                MissingExtension::new(std::any::type_name::<Claims<T>>(), "JwtAuthLayer"),
            )
        }
    }

    impl<T, S> OptionalFromRequestParts<S> for Claims<T>
    where
        T: Send + Sync + 'static,
        S: Send + Sync,
    {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _state: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<Claims<T>>().cloned())
        }
    }
}
