//! Entries as bytes for the Redis tier: a versioned, length-prefixed
//! binary form (bodies are bytes; no serde format needed).

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use tokio::time::Instant;

use super::directives::Verdict;
use super::entry::{Entry, KeyParts, fields_size};
use super::key::KeyHasher;
use crate::cache_headers::{ETag, HttpDate};

const VERSION: u8 = 1;

fn put_bytes(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u32(bytes.len() as u32);
    out.put_slice(bytes);
}

fn put_opt(out: &mut BytesMut, bytes: Option<&[u8]>) {
    match bytes {
        Some(bytes) => {
            out.put_u8(1);
            put_bytes(out, bytes);
        }
        None => out.put_u8(0),
    }
}

/// The entry as bytes (without its time of storage, which Redis adds).
pub(crate) fn encode(entry: &Entry) -> Vec<u8> {
    let mut out = BytesMut::with_capacity(entry.size + 64);
    out.put_u8(VERSION);
    out.put_u16(entry.status.as_u16());
    put_bytes(&mut out, entry.key.path.as_bytes());
    put_bytes(&mut out, entry.key.query.as_bytes());
    put_opt(&mut out, entry.key.subject.as_deref().map(str::as_bytes));
    out.put_u16(entry.vary.len() as u16);
    for (name, value) in entry.vary.iter() {
        put_bytes(&mut out, name.as_str().as_bytes());
        put_opt(&mut out, value.as_deref());
    }
    out.put_u16(entry.headers.len() as u16);
    for (name, value) in &entry.headers {
        put_bytes(&mut out, name.as_str().as_bytes());
        put_bytes(&mut out, value.as_bytes());
    }
    let v = &entry.verdict;
    for d in [
        v.lifetime,
        v.initial_age,
        v.stale_while_revalidate,
        v.stale_if_error,
    ] {
        out.put_u64(d.as_millis() as u64);
    }
    out.put_u8(
        u8::from(v.must_revalidate)
            | u8::from(v.no_cache) << 1
            | u8::from(v.shareable_with_authorization) << 2,
    );
    out.put_u16(entry.group_names.len() as u16);
    for name in entry.group_names.iter() {
        put_bytes(&mut out, name.as_bytes());
    }
    put_bytes(&mut out, &entry.body);
    out.to_vec()
}

struct Reader(Bytes);

impl Reader {
    fn need(&self, n: usize) -> Option<()> {
        (self.0.remaining() >= n).then_some(())
    }
    fn u8(&mut self) -> Option<u8> {
        self.need(1)?;
        Some(self.0.get_u8())
    }
    fn u16(&mut self) -> Option<u16> {
        self.need(2)?;
        Some(self.0.get_u16())
    }
    fn u64(&mut self) -> Option<u64> {
        self.need(8)?;
        Some(self.0.get_u64())
    }
    fn bytes(&mut self) -> Option<Bytes> {
        self.need(4)?;
        let len = self.0.get_u32() as usize;
        self.need(len)?;
        Some(self.0.split_to(len))
    }
    fn opt(&mut self) -> Option<Option<Bytes>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.bytes()?)),
            _ => None,
        }
    }
    fn string(&mut self) -> Option<Box<str>> {
        String::from_utf8(self.bytes()?.to_vec())
            .ok()
            .map(String::into_boxed_str)
    }
}

/// The entry of `bytes`, stored `age` ago (by Redis's clock); `None` when
/// the bytes are not an entry of this version (the entry is then a miss).
pub(crate) fn decode(
    bytes: Bytes,
    age: Duration,
    hasher: &KeyHasher,
    uri_group: u64,
    hash: u64,
) -> Option<Entry> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return None;
    }
    let status = StatusCode::from_u16(r.u16()?).ok()?;
    let path = r.string()?;
    let query = r.string()?;
    let subject = match r.opt()? {
        Some(s) => Some(String::from_utf8(s.to_vec()).ok()?.into_boxed_str()),
        None => None,
    };
    // Every collection sized from its count: no growth while decoding.
    let count = r.u16()?;
    let mut vary = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let name = HeaderName::from_bytes(&r.bytes()?).ok()?;
        let value = r.opt()?.map(|v| v.to_vec().into_boxed_slice());
        vary.push((name, value));
    }
    let count = r.u16()?;
    let mut headers = HeaderMap::with_capacity(usize::from(count));
    for _ in 0..count {
        let name = HeaderName::from_bytes(&r.bytes()?).ok()?;
        let value = HeaderValue::from_maybe_shared(r.bytes()?).ok()?;
        headers.append(name, value);
    }
    let mut ms = [0u64; 4];
    for slot in &mut ms {
        *slot = r.u64()?;
    }
    let flags = r.u8()?;
    let verdict = Verdict {
        lifetime: Duration::from_millis(ms[0]),
        initial_age: Duration::from_millis(ms[1]),
        stale_while_revalidate: Duration::from_millis(ms[2]),
        stale_if_error: Duration::from_millis(ms[3]),
        must_revalidate: flags & 1 != 0,
        no_cache: flags & 2 != 0,
        shareable_with_authorization: flags & 4 != 0,
    };
    let count = r.u16()?;
    let mut group_names = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        group_names.push(r.string()?);
    }
    let body = r.bytes()?;
    let mut groups = Vec::with_capacity(1 + group_names.len());
    groups.push(uri_group);
    groups.extend(group_names.iter().map(|name| hasher.group(name)));
    let etag = headers
        .get(http::header::ETAG)
        .and_then(|v| ETag::from_header_value(v).ok());
    let last_modified = headers
        .get(http::header::LAST_MODIFIED)
        .and_then(|v| HttpDate::from_header_value(v).ok());
    let now = Instant::now();
    let size = 256 + path.len() + query.len() + body.len() + fields_size(&headers);
    Some(Entry {
        key: KeyParts {
            hash,
            path,
            query,
            subject,
        },
        vary: vary.into_boxed_slice(),
        status,
        headers,
        body,
        stored_at: now.checked_sub(age).unwrap_or(now),
        verdict,
        etag,
        last_modified,
        groups: groups.into_boxed_slice(),
        group_names: group_names.into_boxed_slice(),
        size,
        head: Default::default(),
    })
}
