//! What a request finds in the cache: answer, wait, ask Redis, or go to
//! the handler (and what to do with its answer).

use std::sync::Arc;

use http::header::{AUTHORIZATION, CONTENT_LOCATION, LOCATION};
use http::{HeaderMap, Method, Request, Response};
use tokio::time::Instant;

use super::Config;
use super::body::CacheBody;
use super::engine::Counters;
use super::entry::{Entry, KeyParts};
use super::flight::{Flight, Join};
use super::groups::{self, CACHE_GROUP_INVALIDATION};
use super::memory::Lookup;
use super::remote_fill::RemoteFill;
use super::respond::{Miss, from_entry};
use super::status::{Fwd, Status};
use crate::Subject;
use crate::rejection::GrpcProtocol;

/// What a response to an unsafe method invalidates (RFC 9111 §4.4,
/// RFC 9875 §3).
#[derive(Debug)]
pub(crate) struct Invalidate {
    pub(crate) path: Box<str>,
    pub(crate) query: Box<str>,
}

/// What the response future does with the handler's response.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Nothing: gRPC.
    Pass,
    /// `Cache-Status` only.
    Bypass(Fwd),
    /// An unsafe method: invalidate on a non-error response.
    Invalidate(Invalidate),
    /// A miss (maybe stored, maybe answered stale on error).
    Miss(Box<Miss>),
}

/// What the cache does with a request.
pub(crate) enum Step<B> {
    /// Answered from the cache.
    Answer(Response<CacheBody<B>>),
    /// Answered stale; the request refreshes the entry in the background
    /// (RFC 5861 §3).
    Refresh(Response<CacheBody<B>>, Box<Miss>),
    /// Sent to the handler.
    Forward(Plan),
    /// Wait for another request's fill.
    Follow(Arc<Flight>),
    /// Ask the Redis tier first.
    Remote(Box<Miss>),
}

/// The primary key of a request, borrowed from it (nothing allocated on a
/// hit).
struct KeyRef<'a> {
    hash: u64,
    path: &'a str,
    query: std::borrow::Cow<'a, str>,
    subject: Option<&'a str>,
}

impl KeyRef<'_> {
    /// The parts an entry keeps (on a miss).
    fn owned(&self) -> KeyParts {
        KeyParts {
            hash: self.hash,
            path: self.path.into(),
            query: (*self.query).into(),
            subject: self.subject.map(Into::into),
        }
    }

    fn uri_group(&self, config: &Config) -> u64 {
        config.engine.hasher.uri(self.path, &self.query)
    }
}

/// The primary key of a request and whether it carries `Authorization`
/// that no per-principal rule covers; `Err`: bypass.
fn key_of<'a, R>(config: &Config, request: &'a Request<R>) -> Result<(KeyRef<'a>, bool), Fwd> {
    let path = request.uri().path();
    let rule = config.rules.iter().find(|rule| rule.matches(path));
    if rule.is_some_and(|r| r.is_bypass()) {
        return Err(Fwd::Bypass);
    }
    let per_subject = rule.is_some_and(|r| r.is_per_subject());
    let subject = if per_subject {
        match request.extensions().get::<Subject>() {
            Some(subject) if !subject.as_str().is_empty() => Some(subject.as_str()),
            _ => return Err(Fwd::Bypass),
        }
    } else {
        None
    };
    let query = config.query.normalise(request.uri().query());
    let hash = config.engine.hasher.primary(path, &query, subject);
    let authorized = !per_subject && request.headers().contains_key(AUTHORIZATION);
    Ok((
        KeyRef {
            hash,
            path,
            query,
            subject,
        },
        authorized,
    ))
}

/// What the cache does with `request`; `waited`: it already waited for
/// another request's fill once.
pub(crate) fn step<R, B>(config: &Arc<Config>, request: &Request<R>, waited: bool) -> Step<B> {
    let method = request.method();
    if GrpcProtocol::of_request(request.version(), request.headers()).is_some() {
        return Step::Forward(Plan::Pass);
    }
    let head = *method == Method::HEAD;
    if *method != Method::GET && !head {
        if matches!(*method, Method::OPTIONS | Method::TRACE | Method::CONNECT) {
            return Step::Forward(Plan::Bypass(Fwd::Method));
        }
        let query = config.query.normalise(request.uri().query());
        return Step::Forward(Plan::Invalidate(Invalidate {
            path: request.uri().path().into(),
            query: query.into(),
        }));
    }
    let (key, authorized) = match key_of(config, request) {
        Ok(parts) => parts,
        Err(fwd) => return Step::Forward(Plan::Bypass(fwd)),
    };
    let engine = &config.engine;
    let now = Instant::now();
    let found = engine.memory.lookup(
        key.hash,
        |e| e.key.is(key.path, &key.query, key.subject),
        request.headers(),
        now,
    );
    let mut stale: Option<Arc<Entry>> = None;
    let fwd = match found {
        Lookup::Found(entry) if authorized && !entry.verdict.shareable_with_authorization => {
            Fwd::Miss
        }
        Lookup::Found(entry) => {
            // One clock reading, one age for every check below.
            let age = entry.age(now);
            if entry.is_fresh_at(age) {
                let mut status = Status::hit(entry.ttl_at(age));
                if waited {
                    status = Status {
                        hit: false,
                        fwd: Some(Fwd::UriMiss),
                        fwd_status: Some(entry.status.as_u16()),
                        collapsed: true,
                        ..status
                    };
                }
                if let Some(response) =
                    from_entry(config, &entry, method, request.headers(), age, status)
                {
                    Counters::add(if waited {
                        &engine.counters.collapsed
                    } else {
                        &engine.counters.hits
                    });
                    return Step::Answer(response);
                }
                Fwd::Bypass
            } else {
                if !head && entry.may_serve_while_revalidating(now) {
                    let status = Status {
                        detail: Some("stale-while-revalidate"),
                        ..Status::hit(entry.ttl_at(age))
                    };
                    if let Some(response) =
                        from_entry(config, &entry, method, request.headers(), age, status)
                    {
                        Counters::add(&engine.counters.stale_served);
                        // One refresh at a time per key: a running fill is it.
                        if let Join::Lead(guard) = engine.flights.join(key.hash) {
                            let miss = Miss {
                                fwd: Fwd::Stale,
                                key: key.owned(),
                                uri_group: key.uri_group(config),
                                request_headers: request.headers().clone(),
                                authorized,
                                rule_lifetime: rule_lifetime(config, request),
                                stale: None,
                                guard: Some(guard),
                                store: true,
                                collapsed: false,
                                remote: RemoteFill::when(engine.has_remote()),
                            };
                            return Step::Refresh(response, Box::new(miss));
                        }
                        return Step::Answer(response);
                    }
                }
                if entry.may_serve_on_error(now) {
                    stale = Some(entry);
                }
                Fwd::Stale
            }
        }
        Lookup::VaryMiss => Fwd::VaryMiss,
        Lookup::UriMiss => Fwd::UriMiss,
    };
    Counters::add(&engine.counters.misses);
    let guard = if head {
        None
    } else {
        match engine.flights.join(key.hash) {
            Join::Lead(guard) => Some(guard),
            Join::Follow(flight) if !waited => return Step::Follow(flight),
            Join::Follow(_) => None,
        }
    };
    let miss = Miss {
        fwd,
        key: key.owned(),
        uri_group: key.uri_group(config),
        request_headers: if head {
            HeaderMap::new()
        } else {
            request.headers().clone()
        },
        authorized,
        rule_lifetime: rule_lifetime(config, request),
        stale,
        guard,
        store: !head,
        collapsed: false,
        remote: RemoteFill::when(engine.has_remote()),
    };
    if miss.guard.is_some() && engine.has_remote() {
        // This process fills: Redis may have it, or another replica fill.
        return Step::Remote(Box::new(miss));
    }
    Step::Forward(Plan::Miss(Box::new(miss)))
}

fn rule_lifetime<R>(config: &Config, request: &Request<R>) -> Option<std::time::Duration> {
    let path = request.uri().path();
    config
        .rules
        .iter()
        .find(|rule| rule.matches(path))
        .and_then(|rule| rule.rule_lifetime())
}

/// After a non-error response to an unsafe method: the target URI, the
/// `Location` and `Content-Location` paths (RFC 9111 §4.4; same origin:
/// only path-absolute references are followed) and the groups of
/// `Cache-Group-Invalidation` (RFC 9875 §3) are invalidated.
pub(crate) fn invalidate(config: &Config, invalidate: &Invalidate, headers: &HeaderMap) {
    let engine = &config.engine;
    engine.purge_uri(&invalidate.path, &invalidate.query);
    for name in [LOCATION, CONTENT_LOCATION] {
        let Some(target) = headers.get(&name).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if !target.starts_with('/') || target.starts_with("//") {
            continue;
        }
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let query = config.query.normalise(query);
        engine.purge_uri(path, &query);
    }
    if let Some(names) = groups::parse(headers, &CACHE_GROUP_INVALIDATION) {
        for name in names {
            engine.purge_group(&name);
        }
    }
}
