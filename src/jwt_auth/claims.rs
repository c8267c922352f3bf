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
