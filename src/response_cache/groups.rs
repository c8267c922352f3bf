//! `Cache-Groups` and `Cache-Group-Invalidation` (RFC 9875 §2, §3): a
//! Structured Field List of Strings (RFC 9651 §3.1, §3.3.3).

use http::{HeaderMap, HeaderName, HeaderValue};

/// `Cache-Groups` (RFC 9875 §2): the groups a stored response belongs to.
pub const CACHE_GROUPS: HeaderName = HeaderName::from_static("cache-groups");
/// `Cache-Group-Invalidation` (RFC 9875 §3): on a response to an unsafe
/// method, the groups whose stored responses are invalidated.
pub const CACHE_GROUP_INVALIDATION: HeaderName =
    HeaderName::from_static("cache-group-invalidation");

/// The most groups read from one field; the rest are ignored.
pub(crate) const MAX_GROUPS: usize = 32;
/// The longest group name read; longer members make the field invalid.
pub(crate) const MAX_GROUP_LEN: usize = 256;

/// The strings of an RFC 9651 List of Strings over all lines of `name`
/// (parameters ignored, RFC 9875 §2). A member that is no String, or a
/// parse error, makes the whole field ignored (RFC 9651 §4.2): `None`.
pub(crate) fn parse(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for line in headers.get_all(name).iter() {
        parse_line(line, &mut out)?;
    }
    Some(out)
}

fn parse_line(line: &HeaderValue, out: &mut Vec<String>) -> Option<()> {
    let bytes = line.as_bytes();
    let mut i = 0;
    let skip_sp = |i: &mut usize| {
        while *i < bytes.len() && (bytes[*i] == b' ' || bytes[*i] == b'\t') {
            *i += 1;
        }
    };
    skip_sp(&mut i);
    if i == bytes.len() {
        // An empty line adds nothing (RFC 9651 §4.2: an empty field).
        return Some(());
    }
    loop {
        // sf-string: DQUOTE *( unescaped / "\" ( DQUOTE / "\" ) ) DQUOTE
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        i += 1;
        let mut member = String::new();
        loop {
            let b = *bytes.get(i)?;
            i += 1;
            match b {
                b'\\' => {
                    let next = *bytes.get(i)?;
                    if next != b'"' && next != b'\\' {
                        return None;
                    }
                    member.push(char::from(next));
                    i += 1;
                }
                b'"' => break,
                0x20..=0x7e => member.push(char::from(b)),
                _ => return None,
            }
            if member.len() > MAX_GROUP_LEN {
                return None;
            }
        }
        // Parameters (`;key=value`) are allowed and ignored.
        while bytes.get(i) == Some(&b';') {
            i += 1;
            while i < bytes.len() && !matches!(bytes[i], b',' | b';') {
                if bytes[i] == b'"' {
                    return None;
                }
                i += 1;
            }
        }
        if out.len() < MAX_GROUPS && !out.contains(&member) {
            out.push(member);
        }
        skip_sp(&mut i);
        if i == bytes.len() {
            return Some(());
        }
        if bytes[i] != b',' {
            return None;
        }
        i += 1;
        skip_sp(&mut i);
        if i == bytes.len() {
            // A trailing comma is an error (RFC 9651 §4.2.1).
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(lines: &[&'static str]) -> Option<Vec<String>> {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(CACHE_GROUPS, HeaderValue::from_static(line));
        }
        parse(&h, &CACHE_GROUPS)
    }

    // RFC 9875 §2: a List of Strings; parameters ignored.
    #[test]
    fn lists_of_strings() {
        assert_eq!(
            parsed(&[r#""products", "product-42";x=1"#, r#""a\"b\\c""#]).unwrap(),
            ["products", "product-42", r#"a"b\c"#]
        );
        assert_eq!(parsed(&[]).unwrap(), Vec::<String>::new());
        assert_eq!(parsed(&["\"a\", \"a\""]).unwrap(), ["a"]);
    }

    // RFC 9651 §4.2: a field that does not parse is ignored whole.
    #[test]
    fn bad_fields_are_ignored_whole() {
        for bad in [
            "products",
            r#""a", b"#,
            r#""a","#,
            r#""open"#,
            r#""bad\n""#,
            r#""a" "b""#,
        ] {
            assert_eq!(parsed(&[bad]), None, "{bad}");
        }
        let long = format!("\"{}\"", "x".repeat(MAX_GROUP_LEN + 1));
        let mut h = HeaderMap::new();
        h.insert(CACHE_GROUPS, HeaderValue::from_str(&long).unwrap());
        assert_eq!(parse(&h, &CACHE_GROUPS), None);
    }
}
