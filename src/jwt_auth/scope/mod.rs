//! Scope checks: [`RequireScopeLayer`], and the same check inside the
//! authentication layer.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::WWW_AUTHENTICATE;
use http::{HeaderValue, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

mod future;

use super::claims::Scopes;
use crate::body::ResponseBody;
use crate::config::ConfigError;
use crate::principal::Anonymous;
use crate::rejection::{Problem, Rejections, token_required};

pub use future::RequireScopeFuture;

/// RFC 6749 §3.3 `scope-token`: `%x21 / %x23-5B / %x5D-7E`, so never a
/// space, `"` or `\`.
pub(crate) fn valid_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// RFC 7235 quoted-string content we allow in `realm`: visible ASCII and
/// spaces, without `"` or `\` (RFC 6750 §3).
pub(crate) fn valid_realm(realm: &str) -> bool {
    realm
        .bytes()
        .all(|b| (0x20..=0x7E).contains(&b) && b != b'"' && b != b'\\')
}

/// A set of scopes that must all be granted, with its pre-rendered
/// `insufficient_scope` challenge.
#[derive(Debug)]
pub(crate) struct ScopeRule {
    scopes: Vec<Box<str>>,
    challenge: HeaderValue,
}

impl ScopeRule {
    pub(crate) fn new(
        realm: &str,
        scopes: Vec<Box<str>>,
        field: &'static str,
    ) -> Result<Self, ConfigError> {
        if scopes.is_empty() {
            return Err(ConfigError::new(field, "give at least one scope"));
        }
        if let Some(bad) = scopes.iter().find(|s| !valid_scope_token(s)) {
            return Err(ConfigError::new(
                field,
                format!(
                    "`{}` is not a scope token (RFC 6749 §3.3: no spaces, quotes or backslashes)",
                    bad.escape_default()
                ),
            ));
        }
        let joined = scopes.join(" ");
        let challenge = HeaderValue::try_from(format!(
            "Bearer realm=\"{realm}\", error=\"insufficient_scope\", scope=\"{joined}\""
        ))
        .map_err(|_| ConfigError::new(field, "not a valid header value"))?;
        Ok(Self { scopes, challenge })
    }

    pub(crate) fn allows(&self, granted: &Scopes) -> bool {
        self.scopes.iter().all(|s| granted.contains(s))
    }

    pub(crate) fn problem(&self) -> Problem {
        Problem::new(StatusCode::FORBIDDEN)
            .with_detail("the access token lacks a required scope")
            .with_header(WWW_AUTHENTICATE, self.challenge.clone())
            .with_decision(crate::decision::Decision::insufficient_scope())
    }
}

struct ScopeConfig {
    rule: ScopeRule,
    anonymous: HeaderValue,
    rejections: Rejections,
}

/// Requires scopes the token grants, for routes that need more than the
/// authentication layer requires of every request. Install it inside a
/// [`JwtAuthLayer`](super::JwtAuthLayer).
///
/// * every listed scope granted: the request passes;
/// * a token without one of them: 403,
///   `WWW-Authenticate: Bearer realm="…", error="insufficient_scope", scope="…"`
///   (gRPC: status 7);
/// * an anonymous request (the auth layer in optional mode): 401 with the
///   auth layer's challenge (gRPC: status 16).
///
/// ```
/// use tower_edge::jwt_auth::RequireScopeLayer;
///
/// let layer = RequireScopeLayer::builder()
///     .scope("orders:write")
///     .realm("shop")
///     .build()
///     .unwrap();
/// # let _ = layer;
/// assert!(RequireScopeLayer::builder().scope("bad scope").build().is_err());
/// ```
#[derive(Clone)]
pub struct RequireScopeLayer {
    config: Arc<ScopeConfig>,
}

impl fmt::Debug for RequireScopeLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScopeLayer")
            .field("scopes", &self.config.rule.scopes)
            .finish_non_exhaustive()
    }
}

/// Builds a [`RequireScopeLayer`]; from [`RequireScopeLayer::builder`].
#[derive(Debug)]
pub struct RequireScopeLayerBuilder {
    scopes: Vec<Box<str>>,
    realm: Box<str>,
    rejections: Rejections,
}

impl RequireScopeLayerBuilder {
    /// A scope the token must grant; call once per scope (all are required).
    pub fn scope(mut self, scope: impl Into<Box<str>>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// The `realm` of the challenges (default `api`; use the auth layer's).
    pub fn realm(mut self, realm: impl Into<Box<str>>) -> Self {
        self.realm = realm.into();
        self
    }

    /// How rejection bodies are rendered (default problem+json).
    pub fn rejections(mut self, rejections: Rejections) -> Self {
        self.rejections = rejections;
        self
    }

    /// Checks the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// No scope, a scope that is not an RFC 6749 scope token, or a realm
    /// with `"`, `\` or non-printable characters.
    pub fn build(self) -> Result<RequireScopeLayer, ConfigError> {
        if !valid_realm(&self.realm) {
            return Err(ConfigError::new(
                "realm",
                "printable ASCII without `\"` or `\\`",
            ));
        }
        let rule = ScopeRule::new(&self.realm, self.scopes, "scope")?;
        let anonymous = HeaderValue::try_from(format!("Bearer realm=\"{}\"", self.realm))
            .map_err(|_| ConfigError::new("realm", "not a valid header value"))?;
        Ok(RequireScopeLayer {
            config: Arc::new(ScopeConfig {
                rule,
                anonymous,
                rejections: self.rejections,
            }),
        })
    }
}

impl RequireScopeLayer {
    /// A builder; give at least one [`scope`](RequireScopeLayerBuilder::scope).
    pub fn builder() -> RequireScopeLayerBuilder {
        RequireScopeLayerBuilder {
            scopes: Vec::new(),
            realm: super::DEFAULT_REALM.into(),
            rejections: Rejections::default(),
        }
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = RequireScope<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireScope {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// Middleware that requires scopes; see [`RequireScopeLayer`].
#[derive(Clone)]
pub struct RequireScope<S> {
    inner: S,
    config: Arc<ScopeConfig>,
}

impl<S> RequireScope<S> {
    /// Wraps `inner` with the scopes of `layer` (what [`Layer::layer`]
    /// does).
    pub fn new(inner: S, layer: &RequireScopeLayer) -> Self {
        layer.layer(inner)
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Consumes the middleware, returning the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for RequireScope<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequireScope")
            .field("inner", &self.inner)
            .field("scopes", &self.config.rule.scopes)
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequireScope<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = RequireScopeFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let problem = match request.extensions().get::<Scopes>() {
            Some(scopes) if config.rule.allows(scopes) => {
                return RequireScopeFuture::inner(self.inner.call(request));
            }
            Some(_) => config.rule.problem(),
            None => {
                let challenge = request
                    .extensions()
                    .get::<Anonymous>()
                    .map_or_else(|| config.anonymous.clone(), |a| a.challenge().clone());
                token_required(challenge)
            }
        };
        RequireScopeFuture::reject(config.rejections.respond(problem, &request))
    }
}
