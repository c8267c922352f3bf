//! Authentication of one token: from the cache or by verifying it, the
//! RFC 6750 §3 rejections, and what the layer puts in the request.

use std::sync::Arc;

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Request, Response, StatusCode};
use serde::de::DeserializeOwned;

use super::cache::TokenCache;
use super::claims::{Claims, Scopes};
use super::error::JwtError;
use super::header::Parsed;
use super::key::VerificationKey;
use super::key_source::{KeyLookup, KeyRefresh, KeySource};
use super::scope::ScopeRule;
use super::token::TokenSources;
use super::verify::Rules;
use crate::body::ResponseBody;
use crate::config::ConfigError;
#[cfg(feature = "axum")]
use crate::principal::NoSubject;
use crate::principal::{AuthAnswers, Subject};
use crate::rejection::{GrpcCode, Problem, Rejections};

pub(super) type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub(super) fn system_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What a verified token yields, cached and put in the extensions.
#[derive(Debug)]
pub(crate) struct Authenticated<T> {
    pub(super) claims: Claims<T>,
    pub(super) subject: Option<Subject>,
    pub(super) scopes: Scopes,
}

/// The cached value: everything the layer inserts into the extensions.
pub(super) type Cached<T> = Arc<Authenticated<T>>;

/// Pre-rendered `WWW-Authenticate` values.
#[derive(Debug)]
pub(super) struct Challenges {
    /// The bare challenge and the layer's `Rejections`, shared with the
    /// markers the layer leaves on requests it lets through without a
    /// principal, so that what answers later answers as this layer does.
    pub(super) answers: Arc<AuthAnswers>,
    pub(super) invalid: HeaderValue,
    pub(super) expired: HeaderValue,
    pub(super) duplicate: HeaderValue,
    pub(super) malformed_authorization: HeaderValue,
}

impl Challenges {
    pub(super) fn new(realm: &str, rejections: &Rejections) -> Result<Self, ConfigError> {
        let render = |rest: &str| {
            HeaderValue::try_from(format!("Bearer realm=\"{realm}\"{rest}"))
                .map_err(|_| ConfigError::new("realm", "not a valid header value"))
        };
        Ok(Self {
            answers: Arc::new(AuthAnswers {
                missing: render("")?,
                #[cfg(feature = "axum")]
                no_subject: render(
                    ", error=\"invalid_token\", error_description=\"the access token has no subject\"",
                )?,
                rejections: rejections.clone(),
            }),
            invalid: render(
                ", error=\"invalid_token\", error_description=\"the access token is invalid\"",
            )?,
            expired: render(
                ", error=\"invalid_token\", error_description=\"the access token expired\"",
            )?,
            duplicate: render(
                ", error=\"invalid_request\", error_description=\"more than one access token\"",
            )?,
            malformed_authorization: render(
                ", error=\"invalid_request\", error_description=\"malformed Authorization header\"",
            )?,
        })
    }
}

pub(super) struct Shared<T> {
    pub(super) rules: Rules,
    pub(super) keys: Arc<dyn KeySource>,
    pub(super) sources: TokenSources,
    pub(super) optional: bool,
    pub(super) scopes: Option<ScopeRule>,
    pub(super) cache: Option<TokenCache<Cached<T>>>,
    pub(super) challenges: Challenges,
    pub(super) rejections: Rejections,
    pub(super) clock: Clock,
}

pub(super) enum Outcome<T> {
    Authenticated(Cached<T>),
    Rejected(JwtError),
    /// A key refresh, with the key-set generation read before it started:
    /// the lookup runs inside the refresh, so reading the generation after
    /// it could see a set swapped in after the lookup (and cache the token
    /// under it).
    Refresh(KeyRefresh, u64),
}

impl<T: DeserializeOwned + Send + Sync + 'static> Shared<T> {
    /// Authenticates `token`, from the cache or by verifying it.
    pub(super) fn authenticate(&self, token: &str) -> Outcome<T> {
        let now = (self.clock)();
        let generation = self.keys.generation();
        if let Some(cache) = &self.cache
            && let Some(hit) = cache.get(token, now, generation)
        {
            return Outcome::Authenticated(hit);
        }
        let parsed = match self.rules.parse(token) {
            Ok(parsed) => parsed,
            Err(err) => return Outcome::Rejected(err),
        };
        match self.keys.find(parsed.kid.as_deref(), parsed.alg) {
            KeyLookup::Found(key) => self.finish(token, &parsed, &key, now, generation),
            KeyLookup::UnknownKid => match self.keys.refresh(parsed.kid.as_deref(), parsed.alg) {
                Some(refresh) => Outcome::Refresh(refresh, generation),
                None => Outcome::Rejected(JwtError::UnknownKey),
            },
        }
    }

    /// After a key refresh: look the key up in the answer and verify. A
    /// verified token is cached under the generation read before the
    /// refresh: when the refresh changed the set, the entry is not served,
    /// and the token's next request finds its key and caches it then.
    pub(super) fn authenticate_after_refresh(
        &self,
        token: &str,
        lookup: KeyLookup,
        generation: u64,
    ) -> Outcome<T> {
        let now = (self.clock)();
        let parsed = match self.rules.parse(token) {
            Ok(parsed) => parsed,
            Err(err) => return Outcome::Rejected(err),
        };
        match lookup {
            KeyLookup::Found(key) => self.finish(token, &parsed, &key, now, generation),
            KeyLookup::UnknownKid => Outcome::Rejected(JwtError::UnknownKey),
        }
    }

    fn finish(
        &self,
        token: &str,
        parsed: &Parsed<'_>,
        key: &VerificationKey,
        now: i64,
        generation: u64,
    ) -> Outcome<T> {
        match self.rules.verify::<T>(parsed, key, now) {
            Ok(verified) => {
                let authenticated = Arc::new(Authenticated {
                    claims: Claims::new(verified.claims),
                    subject: verified.sub.map(Subject::new),
                    scopes: Scopes::from_joined(verified.scopes),
                });
                if let Some(cache) = &self.cache {
                    cache.insert(
                        token,
                        verified.exp,
                        now,
                        generation,
                        Arc::clone(&authenticated),
                    );
                }
                Outcome::Authenticated(authenticated)
            }
            Err(err) => Outcome::Rejected(err),
        }
    }

    pub(super) fn problem(&self, err: &JwtError) -> Problem {
        let c = &self.challenges;
        let (status, challenge, detail) = match err {
            JwtError::Missing => (
                StatusCode::UNAUTHORIZED,
                &c.answers.missing,
                "a bearer token is required",
            ),
            JwtError::Duplicate => (
                StatusCode::BAD_REQUEST,
                &c.duplicate,
                "more than one access token",
            ),
            JwtError::MalformedAuthorization => (
                StatusCode::BAD_REQUEST,
                &c.malformed_authorization,
                "malformed Authorization header",
            ),
            JwtError::Expired => (
                StatusCode::UNAUTHORIZED,
                &c.expired,
                "the access token expired",
            ),
            _ => (
                StatusCode::UNAUTHORIZED,
                &c.invalid,
                "the access token is invalid",
            ),
        };
        Problem::new(status)
            .with_detail(detail)
            .with_grpc_code(GrpcCode::Unauthenticated)
            .with_header(WWW_AUTHENTICATE, challenge.clone())
            .with_decision(crate::decision::Decision::auth(
                status,
                matches!(err, JwtError::Missing),
            ))
    }

    pub(super) fn reject<B, R>(
        &self,
        err: JwtError,
        request: &Request<R>,
    ) -> Response<ResponseBody<B>> {
        // Debug of the text, not Display: `ClaimsType` quotes serde, which
        // names an unknown claim as the token spelled it (newlines and
        // escapes included), so Display could write a forged log line.
        tracing::debug!(error = ?err.to_string(), "bearer token rejected");
        let mut response = self.rejections.respond(self.problem(&err), request);
        response.extensions_mut().insert(err);
        response
    }

    /// Checks the required scopes, then puts what the token yields in the
    /// request. `false`: a required scope is missing (answer with
    /// [`Shared::deny_scope`]).
    pub(super) fn admit<R>(
        &self,
        request: &mut Request<R>,
        authenticated: &Authenticated<T>,
    ) -> bool {
        if let Some(rule) = &self.scopes
            && !rule.allows(&authenticated.scopes)
        {
            return false;
        }
        let extensions = request.extensions_mut();
        extensions.insert(authenticated.claims.clone());
        extensions.insert(authenticated.scopes.clone());
        if let Some(subject) = &authenticated.subject {
            // On the correlation layer's `request` span (which declares
            // `subject`), so every later line of the request says who made
            // it; a no-op under any other span. A claim is untrusted: a
            // `&str` field, escaped by formatters, never a format string.
            tracing::Span::current().record("subject", subject.as_str());
            extensions.insert(subject.clone());
        } else {
            // For the `Subject` extractor: 401 `invalid_token` (the token
            // does not name who it is for), not "no layer" (500).
            #[cfg(feature = "axum")]
            extensions.insert(NoSubject(Arc::clone(&self.challenges.answers)));
        }
        true
    }

    pub(super) fn deny_scope<B, R>(&self, request: &Request<R>) -> Response<ResponseBody<B>> {
        tracing::debug!("bearer token lacks a required scope");
        let problem = self
            .scopes
            .as_ref()
            .map_or_else(|| Problem::new(StatusCode::FORBIDDEN), ScopeRule::problem);
        self.rejections.respond(problem, request)
    }
}
