//! Cache keys: the primary key (RFC 9111 §2: the target URI; the method
//! is always GET, HEAD reads GET's entries) and the secondary key of the
//! request fields a response `Vary`s on (§4.1).

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue};
use xxhash_rust::xxh3::Xxh3;

use crate::list::{Quoting, members};

/// The most `Vary` names a stored response may list; more, and it is not
/// stored.
pub(crate) const MAX_VARY_NAMES: usize = 8;

/// How the query string takes part in the key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryKey {
    /// The parameters sorted (`?b=2&a=1` and `?a=1&b=2` share an entry);
    /// empty parameters (`&&`) dropped. The default.
    #[default]
    Sorted,
    /// The query exactly as sent.
    Exact,
    /// The query is not part of the key: `/products?utm=x` is `/products`.
    Ignore,
}

impl QueryKey {
    /// The query as it takes part in the key; borrowed unless sorting
    /// changes it.
    pub(crate) fn normalise<'a>(self, query: Option<&'a str>) -> Cow<'a, str> {
        let query = query.unwrap_or("");
        match self {
            Self::Ignore => Cow::Borrowed(""),
            Self::Exact => Cow::Borrowed(query),
            // Most keys have no query: nothing to sort.
            Self::Sorted if query.is_empty() => Cow::Borrowed(""),
            Self::Sorted => {
                let mut sorted = true;
                let mut clean = true;
                let mut last: Option<&str> = None;
                for part in query.split('&') {
                    if part.is_empty() {
                        clean = false;
                        continue;
                    }
                    if last.is_some_and(|last| last > part) {
                        sorted = false;
                    }
                    last = Some(part);
                }
                if sorted && (clean || query.is_empty()) {
                    return Cow::Borrowed(query);
                }
                let mut parts: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
                parts.sort_unstable();
                Cow::Owned(parts.join("&"))
            }
        }
    }
}

/// The longest primary key hashed in one shot from the stack.
const PRIMARY_ONE_SHOT: usize = 240;

/// The seeded hash of the cache's keys and group names: random per cache,
/// so a client cannot aim keys at one bucket.
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHasher {
    seed: u64,
}

impl KeyHasher {
    pub(crate) fn random() -> Self {
        use std::hash::{BuildHasher, RandomState};
        Self {
            seed: RandomState::new().hash_one(0x7e_ed6e_u64),
        }
    }

    /// The primary key: path, normalised query, and the principal when a
    /// rule keys by it.
    pub(crate) fn primary(&self, path: &str, query: &str, subject: Option<&str>) -> u64 {
        // Most keys fit a stack buffer: XXH3 in one shot over the bytes the
        // streaming hasher below would see gives the same value (XXH3 has
        // one value per byte string however it is fed) for a third of the
        // instructions (no streaming state to set up and finish).
        let len = 1 + path.len() + 1 + query.len() + subject.map_or(0, |s| 1 + s.len());
        if len <= PRIMARY_ONE_SHOT {
            let mut buf = [0u8; PRIMARY_ONE_SHOT];
            let mut at = 0;
            let mut put = |bytes: &[u8]| {
                buf[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            };
            put(b"k");
            put(path.as_bytes());
            put(&[0xff]);
            put(query.as_bytes());
            if let Some(subject) = subject {
                put(&[0xfe]);
                put(subject.as_bytes());
            }
            return xxhash_rust::xxh3::xxh3_64_with_seed(&buf[..len], self.seed);
        }
        self.primary_streamed(path, query, subject)
    }

    /// [`primary`](Self::primary) fed piece by piece, for any length.
    fn primary_streamed(&self, path: &str, query: &str, subject: Option<&str>) -> u64 {
        let mut h = Xxh3::with_seed(self.seed);
        h.update(b"k");
        h.update(path.as_bytes());
        h.update(&[0xff]);
        h.update(query.as_bytes());
        if let Some(subject) = subject {
            h.update(&[0xfe]);
            h.update(subject.as_bytes());
        }
        h.digest()
    }

    /// A cache group (RFC 9875 §2) by name.
    pub(crate) fn group(&self, name: &str) -> u64 {
        let mut h = Xxh3::with_seed(self.seed);
        h.update(b"g");
        h.update(name.as_bytes());
        h.digest()
    }

    /// The implicit group of every entry of one URI (all principals and
    /// variants): what an unsafe method invalidates (RFC 9111 §4.4).
    pub(crate) fn uri(&self, path: &str, query: &str) -> u64 {
        let mut h = Xxh3::with_seed(self.seed);
        h.update(b"u");
        h.update(path.as_bytes());
        h.update(&[0xff]);
        h.update(query.as_bytes());
        h.digest()
    }
}

/// One request field of the secondary key: its lines, trimmed and joined
/// with `", "` (RFC 9111 §4.1 lets caches normalise so), or `None` when
/// the request does not have it.
pub(crate) fn field_value(headers: &HeaderMap, name: &HeaderName) -> Option<Box<[u8]>> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    let mut out = first.as_bytes().trim_ascii().to_vec();
    for line in lines {
        out.extend_from_slice(b", ");
        out.extend_from_slice(line.as_bytes().trim_ascii());
    }
    Some(out.into_boxed_slice())
}

/// Whether the request's `name` field equals `stored` (see
/// [`field_value`]), without allocating.
pub(crate) fn field_matches(headers: &HeaderMap, name: &HeaderName, stored: Option<&[u8]>) -> bool {
    let mut lines = headers.get_all(name).iter();
    let Some(stored) = stored else {
        return lines.next().is_none();
    };
    let mut rest = stored;
    let mut first = true;
    for line in lines {
        if !first {
            let Some(after) = rest.strip_prefix(b", ") else {
                return false;
            };
            rest = after;
        }
        first = false;
        let line = line.as_bytes().trim_ascii();
        let Some(after) = rest.strip_prefix(line) else {
            return false;
        };
        rest = after;
    }
    !first && rest.is_empty()
}

/// The names a response `Vary`s on, lowercase, deduplicated; `None` when
/// there are more than [`MAX_VARY_NAMES`] or one is not a field name (the
/// response is then not stored). `*` is handled by the caller.
pub(crate) fn vary_names(headers: &HeaderMap) -> Option<Vec<HeaderName>> {
    let mut names: Vec<HeaderName> = Vec::new();
    for member in members(
        headers
            .get_all(http::header::VARY)
            .iter()
            .map(HeaderValue::as_bytes),
        Quoting::None,
    ) {
        let name = HeaderName::from_bytes(member).ok()?;
        if !names.contains(&name) {
            if names.len() == MAX_VARY_NAMES {
                return None;
            }
            names.push(name);
        }
    }
    Some(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_key_hashes_alike_in_one_shot_and_streamed() {
        let hasher = KeyHasher::random();
        // Around the one-shot limit, with and without a subject.
        for path_len in [1, 100, 200, 230, 236, 237, 238, 239, 240, 300] {
            let path = format!("/{}", "p".repeat(path_len - 1));
            for (query, subject) in [("", None), ("a=1", None), ("a=1", Some("alice"))] {
                assert_eq!(
                    hasher.primary(&path, query, subject),
                    hasher.primary_streamed(&path, query, subject),
                    "{path_len} {query:?} {subject:?}"
                );
            }
        }
        // The separators keep the parts apart.
        assert_ne!(
            hasher.primary("/a", "b", None),
            hasher.primary("/ab", "", None)
        );
        assert_ne!(
            hasher.primary("/a", "", Some("b")),
            hasher.primary("/a", "b", None)
        );
    }

    #[test]
    fn sorted_queries_share_a_key() {
        let sorted = |q| QueryKey::Sorted.normalise(Some(q)).into_owned();
        assert_eq!(sorted("b=2&a=1"), "a=1&b=2");
        assert_eq!(sorted("a=1&&b=2&"), "a=1&b=2");
        assert!(matches!(
            QueryKey::Sorted.normalise(Some("a=1&b=2")),
            Cow::Borrowed("a=1&b=2")
        ));
        assert_eq!(QueryKey::Sorted.normalise(None), "");
        assert_eq!(QueryKey::Exact.normalise(Some("b&a")), "b&a");
        assert_eq!(QueryKey::Ignore.normalise(Some("b&a")), "");
    }

    // RFC 9111 §4.1: the secondary key compares the request's field
    // values, lines combined.
    #[test]
    fn field_values_compare_lines_combined() {
        let mut h = HeaderMap::new();
        let name = HeaderName::from_static("accept-language");
        assert!(field_value(&h, &name).is_none());
        assert!(field_matches(&h, &name, None));
        h.append(&name, HeaderValue::from_static(" en "));
        h.append(&name, HeaderValue::from_static("fr"));
        let stored = field_value(&h, &name).unwrap();
        assert_eq!(&*stored, b"en, fr");
        assert!(field_matches(&h, &name, Some(&stored)));
        assert!(!field_matches(&h, &name, Some(b"en")));
        assert!(!field_matches(&h, &name, None));
        let mut one = HeaderMap::new();
        one.insert(&name, HeaderValue::from_static("en, fr"));
        assert!(field_matches(&one, &name, Some(&stored)));
        one.insert(&name, HeaderValue::from_static(""));
        assert!(field_matches(&one, &name, Some(b"")));
        assert!(!field_matches(&one, &name, None));
    }

    #[test]
    fn vary_names_are_bounded_and_deduplicated() {
        let mut h = HeaderMap::new();
        h.append(
            "vary",
            HeaderValue::from_static("Accept-Language, accept-language"),
        );
        h.append("vary", HeaderValue::from_static("origin"));
        assert_eq!(vary_names(&h).unwrap(), ["accept-language", "origin"]);
        h.insert("vary", HeaderValue::from_static("a,b,c,d,e,f,g,h,i"));
        assert!(vary_names(&h).is_none());
        h.insert("vary", HeaderValue::from_static("bad name"));
        assert!(vary_names(&h).is_none());
    }
}
