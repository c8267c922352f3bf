//! What the layer puts in the request extensions.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Deserializer};

/// The verified claims of the request's token, deserialized into `T`
/// (default [`StandardClaims`]). Cheap to clone (an `Arc`).
///
/// Read it from the request extensions, or (feature `axum`) take it as a
/// handler argument: `Claims<T>` answers 401 when the request is anonymous
/// (optional mode) and `Option<Claims<T>>` never rejects.
pub struct Claims<T = StandardClaims>(Arc<T>);

impl<T> Claims<T> {
    /// Wraps claims (for tests of your own handlers).
    pub fn new(claims: T) -> Self {
        Self(Arc::new(claims))
    }

    /// The claims.
    pub fn get(&self) -> &T {
        &self.0
    }
}

impl<T> Clone for Claims<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Deref for Claims<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: fmt::Debug> fmt::Debug for Claims<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Claims").field(&self.0).finish()
    }
}

/// The registered claims (RFC 7519 §4.1), the OAuth scope claims and every
/// other claim in [`extra`](Self::extra). The default claims type.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[non_exhaustive]
pub struct StandardClaims {
    /// `iss`: the issuer.
    #[serde(default)]
    pub iss: Option<String>,
    /// `sub`: the subject.
    #[serde(default)]
    pub sub: Option<String>,
    /// `aud`: the audiences (a single string becomes one element).
    #[serde(default, deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// `exp`: expiry, seconds since the Unix epoch.
    #[serde(default, deserialize_with = "numeric")]
    pub exp: Option<i64>,
    /// `nbf`: not before, seconds since the Unix epoch.
    #[serde(default, deserialize_with = "numeric")]
    pub nbf: Option<i64>,
    /// `iat`: issued at, seconds since the Unix epoch.
    #[serde(default, deserialize_with = "numeric")]
    pub iat: Option<i64>,
    /// `jti`: the token ID.
    #[serde(default)]
    pub jti: Option<String>,
    /// `scope`: space-separated scopes (RFC 8693 §4.2, RFC 9068).
    #[serde(default)]
    pub scope: Option<String>,
    /// `scp`: scopes as an array (or a space-separated string).
    #[serde(default, deserialize_with = "one_or_many")]
    pub scp: Vec<String>,
    /// Every other claim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn numeric<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let value = f64::deserialize(d)?;
    // `as` saturates.
    Ok(Some(value.floor() as i64))
}

/// The scopes the token grants, from `scope` (space-separated) or `scp`
/// (array or space-separated string). Inserted next to [`Claims`] whatever
/// the claims type, for [`RequireScopeLayer`](super::RequireScopeLayer).
///
/// As a handler argument (feature `axum`), like [`Claims`]: `Scopes`
/// answers 401 when the request is anonymous (optional mode) and
/// `Option<Scopes>` never rejects.
#[derive(Clone, PartialEq, Eq)]
pub struct Scopes(Arc<str>);

impl Scopes {
    /// Scopes from a list (for tests of your own handlers). Scopes never
    /// contain spaces: a value with spaces counts as several scopes.
    pub fn new<I, S>(scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut joined = String::new();
        for scope in scopes {
            for s in scope.as_ref().split(' ').filter(|s| !s.is_empty()) {
                if !joined.is_empty() {
                    joined.push(' ');
                }
                joined.push_str(s);
            }
        }
        Self(joined.into())
    }

    /// From scopes already joined by single spaces.
    pub(crate) fn from_joined(joined: Arc<str>) -> Self {
        Self(joined)
    }

    /// Whether `scope` is granted (exact, case-sensitive).
    pub fn contains(&self, scope: &str) -> bool {
        self.iter().any(|s| s == scope)
    }

    /// The scopes.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(' ').filter(|s| !s.is_empty())
    }

    /// The scopes as one space-separated string (the `scope` claim form).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number of scopes.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// Whether no scope is granted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// How the JWT layer answers a request it let through without a principal,
/// for whatever answers later (extractors, `RequireScopeLayer`): its bare
/// challenge, the challenge for a token without `sub`, and its
/// `Rejections`. One per layer, shared by every request's marker.
#[derive(Debug)]
pub(crate) struct LayerAnswers {
    pub(crate) missing: http::HeaderValue,
    #[cfg(feature = "axum")]
    pub(crate) no_subject: http::HeaderValue,
    #[cfg_attr(not(feature = "axum"), allow(dead_code))]
    pub(crate) rejections: crate::rejection::Rejections,
}

/// Marks a request the layer let through anonymously (optional mode), with
/// how to answer should something further in require a token.
#[derive(Clone, Debug)]
pub(crate) struct Anonymous(pub(crate) std::sync::Arc<LayerAnswers>);

impl Anonymous {
    /// The layer's bare `WWW-Authenticate` challenge.
    pub(crate) fn challenge(&self) -> &http::HeaderValue {
        &self.0.missing
    }
}

/// Marks a request whose verified token has no `sub`, with how to answer
/// should the [`Subject`](crate::Subject) extractor be used.
#[cfg(feature = "axum")]
#[derive(Clone, Debug)]
pub(crate) struct NoSubject(pub(crate) std::sync::Arc<LayerAnswers>);

/// The rejection for a request the layer let through without what an
/// extractor needs: anonymously, or (when `subject` is needed) with a token
/// that has no `sub`. `None`: the layer did not run.
#[cfg(feature = "axum")]
pub(crate) fn missing_principal(
    parts: &http::request::Parts,
    subject: bool,
) -> Option<crate::extract::AuthRejection> {
    use crate::extract::{AuthChallenge, AuthRejection};
    let answer = |answers: &LayerAnswers, challenge: &http::HeaderValue| {
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

#[cfg(feature = "axum")]
mod axum_impl {
    use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::request::Parts;

    use super::Claims;
    use crate::extract::{AuthRejection, MissingExtension, authenticated};

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

/// Rejection of the [`Claims`] extractor: the one of every extractor of
/// what authentication provides.
#[cfg(feature = "axum")]
pub type ClaimsRejection = crate::extract::AuthRejection;

#[cfg(feature = "axum")]
crate::extract::extension_extractor!(Scopes, "JwtAuthLayer", authenticated);
