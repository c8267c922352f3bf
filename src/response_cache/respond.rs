//! The responses the cache makes: hits (200 or 304 from the stored
//! validators), stale answers, and forwarded responses, stored when they
//! may be.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    AGE, CONNECTION, CONTENT_ENCODING, CONTENT_TYPE, ETAG, LAST_MODIFIED, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode};
use http_body::Body;
use tokio::time::Instant;

use super::Config;
use super::body::{CacheBody, Fill};
use super::directives::verdict;
use super::entry::{Entry, KeyParts, fields_size};
use super::flight::FlightGuard;
use super::groups::{self, CACHE_GROUPS};
use super::key::{field_value, vary_names};
use super::remote_fill::RemoteFill;
use super::status::{CACHE_STATUS, Fwd, Status};
use crate::cache_headers::{ETag, Evaluation, HttpDate, Preconditions, Representation};
use crate::decision::{Decision, EdgeLayer, Reason};
use crate::header_map::copy_with_room;

/// What a forwarded request may do to the cache once answered.
#[derive(Debug)]
pub(crate) struct Miss {
    pub(crate) fwd: Fwd,
    pub(crate) key: KeyParts,
    pub(crate) uri_group: u64,
    /// The request's fields, for the secondary key (only when storing).
    pub(crate) request_headers: HeaderMap,
    /// The request carried `Authorization` and no rule keys by principal.
    pub(crate) authorized: bool,
    pub(crate) rule_lifetime: Option<Duration>,
    /// A stale entry to serve should the handler fail (RFC 5861 §4).
    pub(crate) stale: Option<Arc<Entry>>,
    /// Held while this request fills the key.
    pub(crate) guard: Option<FlightGuard>,
    /// Store the response (a GET; HEAD responses have no body to store).
    pub(crate) store: bool,
    pub(crate) collapsed: bool,
    /// Store in Redis too, and the fill lease held (released if unused).
    pub(crate) remote: RemoteFill,
}

/// What the Redis tier said for a key this process fills.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) enum RemoteOutcome {
    /// A fresh entry (now in the memory tier too).
    Hit(Arc<Entry>),
    /// Fill it (holding the fill lease, or none when another replica's
    /// lease ran out).
    Fill(RemoteFill),
    /// Redis failed: bypass.
    Down,
}

pub(crate) type RemoteFuture = Pin<Box<dyn Future<Output = RemoteOutcome> + Send>>;

/// The stored entry as a response, `age` old: 304 when the request's
/// preconditions say the client's copy is current (RFC 9110 §13.2.2, from
/// the stored validators, without the handler), else the stored status,
/// fields and body (none for HEAD). `None`: preconditions the cache does
/// not answer (a failing `If-Match`): the request goes to the handler.
pub(crate) fn from_entry<B>(
    config: &Config,
    entry: &Entry,
    method: &Method,
    request_headers: &HeaderMap,
    age: Duration,
    status: Status,
) -> Option<Response<CacheBody<B>>> {
    let conditional = request_headers.contains_key(http::header::IF_NONE_MATCH)
        || request_headers.contains_key(http::header::IF_MODIFIED_SINCE)
        || request_headers.contains_key(http::header::IF_MATCH)
        || request_headers.contains_key(http::header::IF_UNMODIFIED_SINCE);
    let mut not_modified = false;
    if conditional && entry.status.is_success() {
        let mut current = Representation::new();
        if let Some(etag) = &entry.etag {
            current = current.etag(etag.clone());
        }
        if let Some(date) = entry.last_modified {
            current = current.last_modified(date);
        }
        match Preconditions::from_request(method, request_headers).evaluate(&current) {
            Evaluation::Proceed => {}
            Evaluation::NotModified => not_modified = true,
            _ => return None,
        }
    }
    let mut response = Response::new(if not_modified || method == Method::HEAD {
        CacheBody::empty()
    } else {
        CacheBody::stored(entry.body.clone())
    });
    let age_secs = age.as_secs();
    let render = || {
        // Room for `Age` and `Cache-Status`.
        let mut headers = copy_with_room(&entry.headers, 2);
        // RFC 9111 §5.1: whole seconds.
        headers.insert(AGE, HeaderValue::from(age_secs));
        add_status(config, &mut headers, status);
        headers
    };
    *response.headers_mut() = match status.ttl {
        // Every plain hit in one second of the entry's age has the same
        // fields: rendered once, then cloned.
        Some(ttl) if status == Status::hit(ttl) => entry.head.get_or_render(age_secs, ttl, render),
        _ => render(),
    };
    let reason = if not_modified {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        crate::cache_headers::keep_on_304(response.headers_mut());
        Reason::NotModified
    } else {
        *response.status_mut() = entry.status;
        if status.collapsed {
            Reason::CacheCollapsed
        } else if status.detail.is_some_and(|d| d.starts_with("stale")) {
            Reason::CacheStale
        } else {
            Reason::CacheHit
        }
    };
    // The marker metrics read (which layer answered and why).
    response
        .extensions_mut()
        .insert(Decision::new(EdgeLayer::ResponseCache, reason));
    Some(response)
}

pub(crate) fn add_status(config: &Config, headers: &mut HeaderMap, status: Status) {
    // RFC 9211 §2: a cache appends its member to the list.
    headers.append(CACHE_STATUS, status.render(&config.name));
}

/// Fields never stored: hop-by-hop (RFC 9110 §7.6.1), `Age` (recomputed,
/// RFC 9111 §5.1) and `Cache-Status` (this forward's, not a hit's).
fn strip_unstored(headers: &mut HeaderMap, targeted: &HeaderName) {
    for name in [CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE, AGE] {
        headers.remove(name);
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    headers.remove(CACHE_STATUS);
    headers.remove(targeted);
}

/// Whether a response must pass untouched: server-sent events, upgrades.
fn is_stream(response_headers: &HeaderMap, status: StatusCode) -> bool {
    status == StatusCode::SWITCHING_PROTOCOLS
        || response_headers.get(CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes()
                .get(..17)
                .is_some_and(|p| p.eq_ignore_ascii_case(b"text/event-stream"))
        })
}

/// The handler's response on its way out: our targeted field removed,
/// `Cache-Status` added, and a copy stored when the response may be
/// stored (RFC 9111 §3) and its body fits the entry cap.
pub(crate) fn forwarded<B>(
    config: &Arc<Config>,
    response: Response<B>,
    miss: Option<Box<Miss>>,
    mut status: Status,
) -> Response<CacheBody<B>>
where
    B: Body<Data = Bytes>,
{
    let (mut parts, body) = response.into_parts();
    status.fwd_status = Some(parts.status.as_u16());
    let fill = miss
        .filter(|miss| miss.store && !is_stream(&parts.headers, parts.status))
        .and_then(|miss| prepare_fill(config, &parts.headers, parts.status, miss, &body));
    parts.headers.remove(&config.targeted);
    let body = match fill {
        Some(fill) => {
            status.stored = body.size_hint().exact().is_some();
            CacheBody::filling(body, fill)
        }
        None => CacheBody::inner(body),
    };
    add_status(config, &mut parts.headers, status);
    Response::from_parts(parts, body)
}

fn prepare_fill<B: Body>(
    config: &Arc<Config>,
    headers: &HeaderMap,
    status: StatusCode,
    miss: Box<Miss>,
    body: &B,
) -> Option<Box<Fill>> {
    let hint = body.size_hint();
    if hint.lower() > config.max_entry_bytes as u64 {
        return None;
    }
    let verdict = verdict(
        status,
        headers,
        &config.targeted,
        miss.rule_lifetime,
        miss.authorized,
    )
    .ok()?;
    let names = vary_names(headers)?;
    let vary: Box<[_]> = names
        .into_iter()
        .map(|name| {
            let value = field_value(&miss.request_headers, &name);
            (name, value)
        })
        .collect();
    let mut stored = headers.clone();
    strip_unstored(&mut stored, &config.targeted);
    let etag = stored
        .get(ETAG)
        .and_then(|v| ETag::from_header_value(v).ok());
    let last_modified = stored
        .get(LAST_MODIFIED)
        .and_then(|v| HttpDate::from_header_value(v).ok());
    let engine = &config.engine;
    let mut groups = vec![miss.uri_group];
    let group_names: Box<[Box<str>]> = groups::parse(headers, &CACHE_GROUPS)
        .unwrap_or_default()
        .into_iter()
        .map(String::into_boxed_str)
        .collect();
    groups.extend(group_names.iter().map(|name| engine.hasher.group(name)));
    let size = 256
        + miss.key.path.len()
        + miss.key.query.len()
        + miss.key.subject.as_deref().map_or(0, str::len)
        + fields_size(&stored)
        + vary
            .iter()
            .map(|(_, v)| v.as_ref().map_or(0, |v| v.len()) + 32)
            .sum::<usize>();
    let miss = *miss;
    Some(Box::new(Fill {
        entry: Entry {
            key: miss.key,
            vary,
            status,
            headers: stored,
            body: Bytes::new(),
            stored_at: Instant::now(),
            verdict,
            etag,
            last_modified,
            groups: groups.into_boxed_slice(),
            group_names,
            size,
            head: Default::default(),
        },
        chunks: Vec::new(),
        len: 0,
        cap: config.max_entry_bytes,
        engine: Arc::clone(engine),
        guard: miss.guard,
        remote: miss.remote,
        make_etag: config.make_etag
            && status.is_success()
            && !headers.contains_key(CONTENT_ENCODING),
    }))
}
