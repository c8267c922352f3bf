//! A stored response and what its age makes of it (RFC 9111 §4.2).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, StatusCode};
use tokio::time::Instant;

use super::directives::Verdict;
use super::head::HeadCache;
use super::key::field_matches;
use crate::cache_headers::{ETag, HttpDate};

/// The primary key's parts, kept to check a hash match (a collision never
/// serves another key's entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyParts {
    pub(crate) hash: u64,
    pub(crate) path: Box<str>,
    pub(crate) query: Box<str>,
    pub(crate) subject: Option<Box<str>>,
}

impl KeyParts {
    pub(crate) fn is(&self, path: &str, query: &str, subject: Option<&str>) -> bool {
        &*self.path == path && &*self.query == query && self.subject.as_deref() == subject
    }
}

/// The secondary key: each `Vary` name and the request's value then.
pub(crate) type VaryKey = Box<[(HeaderName, Option<Box<[u8]>>)]>;

/// One stored response.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) key: KeyParts,
    /// The secondary key: each `Vary` name and the request's value then.
    pub(crate) vary: VaryKey,
    pub(crate) status: StatusCode,
    /// The response's fields, without hop-by-hop fields, `Age`, our
    /// targeted field and `Cache-Status`.
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    /// When the response was received (§4.2.3 `response_time`).
    pub(crate) stored_at: Instant,
    pub(crate) verdict: Verdict,
    pub(crate) etag: Option<ETag>,
    pub(crate) last_modified: Option<HttpDate>,
    /// Hashes of the groups it belongs to: its URI's and its
    /// `Cache-Groups`.
    pub(crate) groups: Box<[u64]>,
    /// The `Cache-Groups` names (for the Redis tier, whose replicas hash
    /// them each with their own seed).
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) group_names: Box<[Box<str>]>,
    /// What it costs the memory tier, in bytes (estimated: body, fields,
    /// key).
    pub(crate) size: usize,
    /// A fresh hit's fields, rendered for the current second of its age.
    pub(crate) head: HeadCache,
}

/// What an entry's fields cost the memory tier, in bytes (estimated): the
/// stored ones, and their copy rendered for hits with `Age` and
/// `Cache-Status` ([`HeadCache`]).
pub(crate) fn fields_size(headers: &HeaderMap) -> usize {
    let stored: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 32)
        .sum();
    2 * stored + 128
}

impl Entry {
    /// Its current age (§4.2.3): the age it came with plus its time here.
    pub(crate) fn age(&self, now: Instant) -> Duration {
        self.verdict.initial_age + now.saturating_duration_since(self.stored_at)
    }

    /// Whole seconds of freshness left, negative when stale (RFC 9211
    /// §2.4 `ttl`).
    pub(crate) fn ttl(&self, now: Instant) -> i64 {
        self.ttl_at(self.age(now))
    }

    /// [`ttl`](Self::ttl) at a given age.
    pub(crate) fn ttl_at(&self, age: Duration) -> i64 {
        let lifetime = self.verdict.lifetime.as_secs() as i64;
        // Round the age up: a response 0.5 s old has less than its whole
        // lifetime left.
        let age = age.as_secs() as i64 + i64::from(age.subsec_nanos() > 0);
        lifetime - age
    }

    /// Served without going to the handler (fresh, not `no-cache`).
    pub(crate) fn is_fresh(&self, now: Instant) -> bool {
        self.is_fresh_at(self.age(now))
    }

    /// [`is_fresh`](Self::is_fresh) at a given age.
    pub(crate) fn is_fresh_at(&self, age: Duration) -> bool {
        !self.verdict.no_cache && age < self.verdict.lifetime
    }

    /// Stale, but within `stale-while-revalidate` (RFC 5861 §3).
    pub(crate) fn may_serve_while_revalidating(&self, now: Instant) -> bool {
        let v = &self.verdict;
        !v.must_revalidate && !v.no_cache && self.age(now) < v.lifetime + v.stale_while_revalidate
    }

    /// Within `stale-if-error` (RFC 5861 §4).
    pub(crate) fn may_serve_on_error(&self, now: Instant) -> bool {
        let v = &self.verdict;
        !v.must_revalidate && self.age(now) < v.lifetime + v.stale_if_error
    }

    /// Of no use any more: past its lifetime and both stale windows.
    pub(crate) fn is_dead(&self, now: Instant) -> bool {
        let v = &self.verdict;
        let window = v.stale_while_revalidate.max(v.stale_if_error);
        self.age(now) >= v.lifetime + window
    }

    /// Whether the request's fields match the secondary key (§4.1).
    pub(crate) fn matches_vary(&self, headers: &HeaderMap) -> bool {
        self.vary
            .iter()
            .all(|(name, value)| field_matches(headers, name, value.as_deref()))
    }

    /// Same secondary key as `other` (a newer response replaces it).
    pub(crate) fn same_variant(&self, other: &Entry) -> bool {
        self.key == other.key && self.vary == other.vary
    }
}
