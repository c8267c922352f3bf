//! The [`ETag`] type, entity-tag list parsing and comparison (RFC 9110 §8.8.3).

use std::fmt;
use std::str::FromStr;

use http::HeaderValue;
use http::header::GetAll;

/// An entity tag (RFC 9110 §8.8.3): `"opaque"` (strong) or `W/"opaque"`
/// (weak).
///
/// Parse one with [`FromStr`] (`"\"v1\"".parse()`, `"W/\"v1\"".parse()`),
/// build one with [`ETag::strong`] / [`ETag::weak`] or from content with
/// [`ETag::from_content`]. [`Display`](fmt::Display) writes the header form,
/// so parsing what is displayed gives the same tag back.
///
/// The opaque part holds visible ASCII except `"` (the `etagc` characters
/// of the RFC without `obs-text`). Cloning is cheap: the rendered header
/// value is reference counted.
///
/// ```
/// use tower_edge::cache_headers::ETag;
///
/// let tag: ETag = "W/\"v1\"".parse().unwrap();
/// assert!(tag.is_weak());
/// assert_eq!(tag.opaque(), "v1");
/// assert_eq!(tag.to_string(), "W/\"v1\"");
/// // RFC 9110 §8.8.3.2: weak comparison ignores weakness, strong does not.
/// let strong = tower_edge::cache_headers::ETag::strong("v1").unwrap();
/// assert!(tag.weak_eq(&strong));
/// assert!(!tag.strong_eq(&strong));
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ETag {
    /// The full header form, `"x"` or `W/"x"`.
    value: HeaderValue,
    weak: bool,
}

/// A string is not a valid entity tag or opaque tag.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a valid entity tag: expected `\"opaque\"` or `W/\"opaque\"` of visible ASCII without `\"`"
)]
pub struct InvalidETag(());

/// `etagc` without obs-text: `%x21 / %x23-7E`.
const fn is_etagc(b: u8) -> bool {
    b == 0x21 || (b >= 0x23 && b <= 0x7e)
}

/// `etagc` as received: obs-text (`%x80-FF`) is allowed in what clients send.
const fn is_etagc_received(b: u8) -> bool {
    is_etagc(b) || b >= 0x80
}

/// `ETAGC_RECEIVED[b] == is_etagc_received(b)`: one load per byte while
/// scanning a tag, which happens on every conditional request.
static ETAGC_RECEIVED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = is_etagc_received(b as u8);
        b += 1;
    }
    table
};

impl ETag {
    fn build(opaque: &str, weak: bool) -> Result<Self, InvalidETag> {
        if !opaque.bytes().all(is_etagc) {
            return Err(InvalidETag(()));
        }
        let mut text = String::with_capacity(opaque.len() + 4);
        if weak {
            text.push_str("W/");
        }
        text.push('"');
        text.push_str(opaque);
        text.push('"');
        let value = HeaderValue::from_str(&text).map_err(|_| InvalidETag(()))?;
        Ok(Self { value, weak })
    }

    /// A strong tag with this opaque part (without the quotes).
    ///
    /// # Errors
    ///
    /// The opaque part holds a `"`, a space, a control or non-ASCII character.
    pub fn strong(opaque: &str) -> Result<Self, InvalidETag> {
        Self::build(opaque, false)
    }

    /// A weak tag with this opaque part (without the quotes).
    ///
    /// # Errors
    ///
    /// As for [`ETag::strong`].
    pub fn weak(opaque: &str) -> Result<Self, InvalidETag> {
        Self::build(opaque, true)
    }

    /// A strong tag for these bytes: their 64-bit xxh3 hash, in hex. The
    /// layer's default [`MakeETag`](super::MakeETag) gives the same tag for
    /// the same body, so a handler that knows its representation's bytes
    /// can state the tag before sending them.
    pub fn from_content(content: &[u8]) -> Self {
        Self::from_hash(xxhash_rust::xxh3::xxh3_64(content), None)
    }

    /// `"<16 hex digits>"`, or `"<hex>-<suffix>"`; `suffix` holds etagc only.
    pub(crate) fn from_hash(hash: u64, suffix: Option<&[u8]>) -> Self {
        let mut buf = [0u8; 2 + 16 + 1 + 32];
        buf[0] = b'"';
        buf[1..17].copy_from_slice(&crate::hex::u64_digits(hash));
        let mut len = 17;
        if let Some(suffix) = suffix {
            buf[len] = b'-';
            len += 1;
            for &b in suffix.iter().filter(|b| is_etagc(**b)).take(32 - 1) {
                buf[len] = b;
                len += 1;
            }
        }
        buf[len] = b'"';
        len += 1;
        let value = HeaderValue::from_bytes(&buf[..len]).expect("hex and etagc are header-safe");
        Self { value, weak: false }
    }

    /// The same tag with `-suffix` appended to its opaque part (characters
    /// that may not appear in a tag are dropped), keeping its weakness.
    pub(crate) fn with_suffix(&self, suffix: &[u8]) -> Self {
        let mut opaque = String::from(self.opaque());
        opaque.push('-');
        opaque.extend(suffix.iter().filter(|b| is_etagc(**b)).map(|&b| b as char));
        Self::build(&opaque, self.weak).unwrap_or_else(|_| self.clone())
    }

    /// Whether the tag is weak (`W/` prefix).
    pub fn is_weak(&self) -> bool {
        self.weak
    }

    /// The opaque part, without `W/` and quotes.
    pub fn opaque(&self) -> &str {
        let text = self.value.to_str().unwrap_or_default();
        let start = if self.weak { 3 } else { 1 };
        text.get(start..text.len().saturating_sub(1))
            .unwrap_or_default()
    }

    /// The header form, ready to be sent as `ETag`.
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    /// Parses an `ETag` header value.
    ///
    /// # Errors
    ///
    /// The value is not exactly one entity tag.
    pub fn from_header_value(value: &HeaderValue) -> Result<Self, InvalidETag> {
        let tag = parse_single(value.as_bytes()).ok_or(InvalidETag(()))?;
        if !tag.opaque.iter().all(|b| is_etagc(*b)) {
            return Err(InvalidETag(()));
        }
        Ok(Self {
            value: value.clone(),
            weak: tag.weak,
        })
    }

    /// Strong comparison (RFC 9110 §8.8.3.2): both tags strong and their
    /// opaque parts equal.
    pub fn strong_eq(&self, other: &ETag) -> bool {
        self.as_ref().strong_eq(other.as_ref())
    }

    /// Weak comparison (RFC 9110 §8.8.3.2): opaque parts equal, weakness
    /// ignored.
    pub fn weak_eq(&self, other: &ETag) -> bool {
        self.as_ref().weak_eq(other.as_ref())
    }

    pub(crate) fn as_ref(&self) -> TagRef<'_> {
        let bytes = self.value.as_bytes();
        let start = if self.weak { 3 } else { 1 };
        TagRef {
            weak: self.weak,
            opaque: &bytes[start..bytes.len() - 1],
        }
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ETag").field(&self.value).finish()
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.value.to_str().unwrap_or_default())
    }
}

impl FromStr for ETag {
    type Err = InvalidETag;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = HeaderValue::from_str(s).map_err(|_| InvalidETag(()))?;
        Self::from_header_value(&value)
    }
}

impl From<ETag> for HeaderValue {
    fn from(tag: ETag) -> Self {
        tag.value
    }
}

/// A borrowed entity tag, as found in a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TagRef<'a> {
    pub(crate) weak: bool,
    pub(crate) opaque: &'a [u8],
}

impl TagRef<'_> {
    pub(crate) fn strong_eq(self, other: TagRef<'_>) -> bool {
        !self.weak && !other.weak && self.opaque == other.opaque
    }

    pub(crate) fn weak_eq(self, other: TagRef<'_>) -> bool {
        self.opaque == other.opaque
    }
}

/// Parses a field that holds exactly one entity tag, borrowing it.
pub(crate) fn parse_single(bytes: &[u8]) -> Option<TagRef<'_>> {
    match parse_tag(bytes, 0) {
        Some((tag, end)) if end == bytes.len() => Some(tag),
        _ => None,
    }
}

/// Parses `[W/]"etagc*"` at `at`; returns the tag and the index after it.
/// `W/` is case-sensitive (RFC 9110 §8.8.3): `w/` is malformed.
fn parse_tag(bytes: &[u8], at: usize) -> Option<(TagRef<'_>, usize)> {
    let (weak, quote) = if bytes[at..].starts_with(b"W/") {
        (true, at + 2)
    } else {
        (false, at)
    };
    if bytes.get(quote) != Some(&b'"') {
        return None;
    }
    let start = quote + 1;
    let rest = &bytes[start..];
    // One pass: up to the closing quote, every byte must be `etagc`.
    for (len, &b) in rest.iter().enumerate() {
        if b == b'"' {
            let opaque = &rest[..len];
            return Some((TagRef { weak, opaque }, start + len + 1));
        }
        if !ETAGC_RECEIVED[usize::from(b)] {
            return None;
        }
    }
    None
}

/// What an `If-Match` / `If-None-Match` field (all its lines) holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TagList {
    /// `*` alone.
    Any,
    /// One or more entity tags; `matched` tells whether one of them matched
    /// the current tag under the requested comparison.
    Tags { matched: bool },
    /// Unquoted tags, `w/`, `*` mixed with tags, garbage, or no member at all.
    Malformed,
}

/// Parses every line of a `#entity-tag / "*"` field and compares each tag
/// with `current` (strongly when `strong`), without allocating.
///
/// Lists may span several lines, hold empty members (`a, , b`) and optional
/// whitespace; a comma between quotes belongs to the tag (RFC 9110 §5.6.1,
/// §5.3).
pub(crate) fn match_list(
    lines: GetAll<'_, HeaderValue>,
    current: Option<TagRef<'_>>,
    strong: bool,
) -> TagList {
    let mut any = false;
    let mut tags = false;
    let mut matched = false;
    for line in lines {
        let bytes = line.as_bytes();
        let mut i = 0;
        loop {
            // Skip OWS and empty members.
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b',') {
                i += 1;
            }
            if i == bytes.len() {
                break;
            }
            if bytes[i] == b'*' {
                any = true;
                i += 1;
            } else {
                let Some((tag, end)) = parse_tag(bytes, i) else {
                    return TagList::Malformed;
                };
                tags = true;
                if let Some(current) = current {
                    matched |= if strong {
                        tag.strong_eq(current)
                    } else {
                        tag.weak_eq(current)
                    };
                }
                i = end;
            }
            // After a member: OWS, then a comma or the end.
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
                i += 1;
            }
            if i < bytes.len() && bytes[i] != b',' {
                return TagList::Malformed;
            }
        }
    }
    match (any, tags) {
        (true, false) => TagList::Any,
        (false, true) => TagList::Tags { matched },
        // `*` mixed with tags, or nothing at all.
        _ => TagList::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;
    use http::header::IF_NONE_MATCH;

    fn tag(s: &str) -> ETag {
        s.parse().unwrap()
    }

    // RFC 9110 §8.8.3.2, its comparison table.
    #[test]
    fn strong_and_weak_comparison_table() {
        let cases = [
            ("W/\"1\"", "W/\"1\"", false, true),
            ("W/\"1\"", "W/\"2\"", false, false),
            ("W/\"1\"", "\"1\"", false, true),
            ("\"1\"", "\"1\"", true, true),
            ("\"1\"", "\"2\"", false, false),
        ];
        for (a, b, strong, weak) in cases {
            assert_eq!(tag(a).strong_eq(&tag(b)), strong, "{a} vs {b} strong");
            assert_eq!(tag(b).strong_eq(&tag(a)), strong, "{b} vs {a} strong");
            assert_eq!(tag(a).weak_eq(&tag(b)), weak, "{a} vs {b} weak");
            assert_eq!(tag(b).weak_eq(&tag(a)), weak, "{b} vs {a} weak");
        }
    }

    // RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; weak = %s"W/"
    // (case-sensitive); opaque-tag = DQUOTE *etagc DQUOTE.
    #[test]
    fn syntax_is_strict() {
        assert!(tag("\"\"").opaque().is_empty());
        assert_eq!(tag("\"a,b\"").opaque(), "a,b");
        for bad in [
            "abc", "w/\"x\"", "W/x", "\"x", "x\"", "\"a\"b\"", "\"a b\"", " \"x\"", "\"x\" ",
            "W/ \"x\"", "",
        ] {
            assert!(bad.parse::<ETag>().is_err(), "{bad:?}");
        }
        assert!(ETag::strong("a\"b").is_err());
        assert!(ETag::weak("é").is_err());
        assert_eq!(ETag::weak("v1").unwrap().to_string(), "W/\"v1\"");
    }

    #[test]
    fn from_content_is_a_stable_strong_hash() {
        let a = ETag::from_content(b"{\"id\":1}");
        assert!(!a.is_weak());
        assert_eq!(a.opaque().len(), 16);
        assert_eq!(a, ETag::from_content(b"{\"id\":1}"));
        assert_ne!(a, ETag::from_content(b"{\"id\":2}"));
        let suffixed = ETag::from_hash(1, Some(b"gzip"));
        assert_eq!(suffixed.to_string(), "\"0000000000000001-gzip\"");
    }

    fn list(lines: &[&'static str], current: &str, strong: bool) -> TagList {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(IF_NONE_MATCH, HeaderValue::from_static(line));
        }
        let current = tag(current);
        match_list(
            headers.get_all(IF_NONE_MATCH),
            Some(current.as_ref()),
            strong,
        )
    }

    // RFC 9110 §5.6.1 (lists: empty members, OWS), §5.3 (several lines make
    // one list), §8.8.3 (a comma inside quotes belongs to the tag).
    #[test]
    fn lists_across_lines_with_empty_members_and_quoted_commas() {
        assert_eq!(
            list(&["\"x\", ,\t", " , \"a,b\""], "\"a,b\"", false),
            TagList::Tags { matched: true }
        );
        assert_eq!(
            list(&["\"a\"", "\"b\""], "\"a,b\"", false),
            TagList::Tags { matched: false }
        );
        assert_eq!(list(&["*"], "\"a\"", false), TagList::Any);
        assert_eq!(list(&[" * , "], "\"a\"", false), TagList::Any);
        assert_eq!(
            list(&["W/\"1\""], "\"1\"", true),
            TagList::Tags { matched: false }
        );
    }

    // RFC 9110 §8.8.3 (entity-tag grammar), §13.1.2: malformed values
    // (unquoted, `w/`, `*` mixed with tags) are malformed, never a match.
    #[test]
    fn malformed_lists_are_reported() {
        for bad in [
            &["abc"][..],
            &["w/\"1\""],
            &["*, \"1\""],
            &["\"1\"", "*"],
            &["\"1\" \"2\""],
            &["\"1"],
            &[""],
            &[" , "],
            &["\"1\"x"],
        ] {
            assert_eq!(list(bad, "\"1\"", false), TagList::Malformed, "{bad:?}");
        }
    }
}
