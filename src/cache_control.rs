//! The directives of `Cache-Control` field values (RFC 9111 §5.2), read
//! the same way by every layer that looks at them.
//!
//! The field is a comma-separated list (RFC 9110 §5.6.1) over all its
//! lines; each member is `token [ "=" ( token / quoted-string ) ]`. A comma
//! inside a quoted string (RFC 9110 §5.6.4) belongs to the value; empty
//! members and optional whitespace around members are tolerated. Nothing
//! is allocated: directives are slices of the field values. The list is
//! read by the crate's one list scanner, [`crate::list`].

use crate::list::{self, Members, Quoting};

/// One directive: a member of the list, trimmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Directive<'a> {
    member: &'a [u8],
    name: &'a [u8],
    value: Option<&'a [u8]>,
}

impl<'a> Directive<'a> {
    fn parse(member: &'a [u8]) -> Self {
        // A name is a token: it never holds `=`, so the first one ends it.
        match member.iter().position(|&b| b == b'=') {
            Some(at) => Self {
                member,
                name: member[..at].trim_ascii_end(),
                value: Some(member[at + 1..].trim_ascii_start()),
            },
            None => Self {
                member,
                name: member,
                value: None,
            },
        }
    }

    /// Whether the directive is called `name` (compared case-insensitively,
    /// RFC 9111 §5.2).
    pub(crate) fn is(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name.as_bytes())
    }

    /// `no-store` (RFC 9111 §5.2.2.5) or an unqualified `private`
    /// (§5.2.2.7): no shared cache may store the response.
    #[cfg(any(feature = "jwt-auth", feature = "rate-limit"))]
    fn forbids_shared_storage(&self) -> bool {
        self.is("no-store") || (self.is("private") && self.value.is_none())
    }

    /// The argument after `=`, as written (a quoted string keeps its quotes
    /// and escapes); `None` without `=`.
    #[cfg_attr(not(feature = "jwks"), allow(dead_code))]
    pub(crate) fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    /// The whole member as written, name and argument.
    #[cfg_attr(not(feature = "jwt-auth"), allow(dead_code))]
    pub(crate) fn as_bytes(&self) -> &'a [u8] {
        self.member
    }
}

/// The directives of `Cache-Control` field lines, in order: see
/// [`directives`].
#[derive(Debug, Clone)]
pub(crate) struct Directives<'a, I> {
    members: Members<'a, I>,
}

/// The directives of every line in `lines` (the raw field values), as one
/// list (RFC 9110 §5.6.1, quoted-strings per §5.6.4).
pub(crate) fn directives<'a, I>(lines: I) -> Directives<'a, I::IntoIter>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    Directives {
        members: list::members(lines, Quoting::Rfc9110),
    }
}

impl<'a, I> Iterator for Directives<'a, I>
where
    I: Iterator<Item = &'a [u8]>,
{
    type Item = Directive<'a>;

    fn next(&mut self) -> Option<Directive<'a>> {
        self.members.next().map(Directive::parse)
    }
}

/// The directives of every `Cache-Control` line of `headers`.
#[cfg(any(feature = "jwt-auth", feature = "rate-limit"))]
fn field_directives(headers: &http::HeaderMap) -> impl Iterator<Item = Directive<'_>> {
    directives(
        headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .map(http::HeaderValue::as_bytes),
    )
}

/// Whether a shared cache may store a response with these fields, as far
/// as its `Cache-Control` and `Expires` say (RFC 9111 §3): explicit
/// freshness or `public` (`public`, `s-maxage`, `max-age`, `Expires`), and
/// neither `no-store` (§5.2.2.5) nor an unqualified `private` (§5.2.2.7).
/// Heuristic freshness (§4.2.2) is not counted, nor whether the request
/// carried `Authorization` (§3.5): for deciding to protect per-client
/// fields, answering "may store" too often is the safe side.
#[cfg(feature = "rate-limit")]
pub(crate) fn shared_cache_may_store(headers: &http::HeaderMap) -> bool {
    let mut fresh = headers.contains_key(http::header::EXPIRES);
    for directive in field_directives(headers) {
        if directive.forbids_shared_storage() {
            return false;
        }
        fresh |= directive.is("public") || directive.is("s-maxage") || directive.is("max-age");
    }
    fresh
}

/// Makes a response unstorable by shared caches without weakening what the
/// handler set (RFC 9111 §5.2.2; used for RFC 6750 §2.3): when a line
/// already forbids it (`no-store`, unqualified `private`), nothing to do;
/// otherwise every directive is kept and `private` added, in place of
/// `public` and of a field-qualified `private="..."` (which lets shared
/// caches store the rest).
#[cfg(feature = "jwt-auth")]
pub(crate) fn make_private(headers: &mut http::HeaderMap) {
    use http::HeaderValue;
    use http::header::CACHE_CONTROL;

    let replaced = |d: &Directive<'_>| d.is("public") || d.is("private");
    let mut rewrite = false;
    for directive in field_directives(headers) {
        if directive.forbids_shared_storage() {
            return;
        }
        rewrite |= replaced(&directive);
    }
    if !rewrite {
        // Another line: the existing ones stay as they are.
        headers.append(CACHE_CONTROL, HeaderValue::from_static("private"));
        return;
    }
    let mut merged = b"private".to_vec();
    for directive in field_directives(headers).filter(|d| !replaced(d)) {
        merged.extend_from_slice(b", ");
        merged.extend_from_slice(directive.as_bytes());
    }
    // The parts come from valid header values: this cannot fail, but
    // should it, the strictest answer is the safe one.
    let merged = HeaderValue::from_bytes(&merged)
        .unwrap_or_else(|_| HeaderValue::from_static("private, no-store"));
    headers.insert(CACHE_CONTROL, merged);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, value, member) of each directive of `lines`.
    fn parsed<'a>(lines: &[&'a str]) -> Vec<(&'a str, Option<&'a str>, &'a str)> {
        let text = |b: &'a [u8]| std::str::from_utf8(b).unwrap();
        directives(lines.iter().map(|l| l.as_bytes()))
            .map(|d| (text(d.name), d.value().map(text), text(d.as_bytes())))
            .collect()
    }

    // RFC 9110 §5.6.4: a comma (or an escaped quote) inside a quoted string
    // belongs to the value.
    #[test]
    fn commas_in_quoted_strings_belong_to_the_value() {
        assert_eq!(
            parsed(&[r#"private="a,no-store,b", no-cache="x\", y", max-age=1"#]),
            [
                (
                    "private",
                    Some(r#""a,no-store,b""#),
                    r#"private="a,no-store,b""#
                ),
                ("no-cache", Some(r#""x\", y""#), r#"no-cache="x\", y""#),
                ("max-age", Some("1"), "max-age=1"),
            ]
        );
        assert!(!directives([&br#"private="a,no-store,b""#[..]]).any(|d| d.is("no-store")));
    }

    // RFC 9110 §5.3: several lines are one list; a quote left open does not
    // swallow the next line.
    #[test]
    fn every_line_is_read() {
        assert_eq!(
            parsed(&[
                "max-age=60",
                "",
                "no-store, public",
                r#"private="open"#,
                "must-revalidate"
            ]),
            [
                ("max-age", Some("60"), "max-age=60"),
                ("no-store", None, "no-store"),
                ("public", None, "public"),
                ("private", Some(r#""open"#), r#"private="open"#),
                ("must-revalidate", None, "must-revalidate"),
            ]
        );
        assert!(parsed(&[]).is_empty());
    }

    // RFC 9111 §5.2: directive names are case-insensitive.
    #[test]
    fn names_compare_case_insensitively() {
        let all: Vec<_> = directives([&b"No-Store, MAX-AGE=5, x-no-store-ish"[..]]).collect();
        assert!(all[0].is("no-store") && all[0].is("NO-STORE"));
        assert!(all[1].is("max-age") && !all[1].is("max"));
        assert!(!all[2].is("no-store"));
    }

    // RFC 9110 §5.6.1: empty members and OWS around members are tolerated.
    #[test]
    fn empty_members_and_whitespace_are_skipped() {
        assert_eq!(
            parsed(&[" ,\t public ,, max-age = 30 ,no-cache,\t", " , ", ","]),
            [
                ("public", None, "public"),
                ("max-age", Some("30"), "max-age = 30"),
                ("no-cache", None, "no-cache"),
            ]
        );
    }

    // A `=` inside a quoted value is part of it; the name ends at the first.
    #[test]
    fn an_equals_sign_in_a_quoted_value_stays_in_the_value() {
        assert_eq!(
            parsed(&[r#"x-ext="a=b,c=d", max-age="60""#]),
            [
                ("x-ext", Some(r#""a=b,c=d""#), r#"x-ext="a=b,c=d""#),
                ("max-age", Some(r#""60""#), r#"max-age="60""#),
            ]
        );
    }

    #[cfg(feature = "rate-limit")]
    #[test]
    fn shared_cache_storability() {
        use http::{HeaderMap, HeaderValue, header};
        let with = |lines: &[&'static str], expires: bool| {
            let mut h = HeaderMap::new();
            for line in lines {
                h.append(header::CACHE_CONTROL, HeaderValue::from_static(line));
            }
            if expires {
                h.insert(header::EXPIRES, HeaderValue::from_static("0"));
            }
            shared_cache_may_store(&h)
        };
        assert!(with(&["public"], false));
        assert!(with(&["S-MAXAGE=5"], false));
        assert!(with(&["no-cache", "max-age=0"], false));
        assert!(with(&[r#"private="x", max-age=5"#], false));
        assert!(with(&[], true));
        assert!(!with(&[], false));
        assert!(!with(&["public", "no-store"], false));
        assert!(!with(&["Private, max-age=5"], false));
        assert!(!with(&["must-revalidate"], false));
    }
}
