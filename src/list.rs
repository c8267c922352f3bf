//! The members of comma-separated field values, forward and reverse: the
//! one list scanner every layer uses.
//!
//! A list field is a comma-separated list over all its field lines
//! (RFC 9110 §5.6.1, §5.3): `a, b` on one line and `a` then `b` on two are
//! the same list. Empty members and optional whitespace (OWS: space and
//! horizontal tab, RFC 9110 §5.6.3) around members are tolerated and
//! skipped. With [`Quoting::Rfc9110`] a comma inside a quoted-string
//! (RFC 9110 §5.6.4, where `\` escapes the next octet) belongs to the
//! member; a quote left open ends with its line, so one bad line never
//! swallows the next. With [`Quoting::None`] every comma separates: the
//! W3C lists (`tracestate`, W3C Trace Context §3.3.1.1; `baggage`, W3C
//! Baggage §3.3.1) have no quoted strings.
//!
//! [`members`] walks left to right, [`members_rev`] right to left (for
//! `Forwarded` and `X-Forwarded-For`, read from the nearest proxy); both
//! yield the same members, trimmed, as slices of the field values. Nothing
//! is allocated, except by [`members_rev`] for a line that holds a quote
//! under [`Quoting::Rfc9110`] (the separators of that line are found in one
//! forward pass, then walked back).

/// Whether quoted-strings hide commas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quoting {
    /// RFC 9110 §5.6.4: a comma inside `"..."` (with `\` escapes) is not a
    /// separator.
    Rfc9110,
    /// Every comma separates (the W3C lists).
    #[cfg_attr(not(feature = "otel"), allow(dead_code))]
    None,
}

/// Trims OWS (RFC 9110 §5.6.3: SP and HTAB) at both ends.
pub(crate) fn trim_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    &bytes[start..end.max(start)]
}

/// The index of the comma that ends the first member of `list`, or its
/// length.
fn member_end(list: &[u8], quoting: Quoting) -> usize {
    if quoting == Quoting::None {
        return list.iter().position(|&b| b == b',').unwrap_or(list.len());
    }
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in list.iter().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if quoted => escaped = true,
            b'"' => quoted = !quoted,
            b',' if !quoted => return i,
            _ => {}
        }
    }
    list.len()
}

/// The members of every line in `lines` (the raw field values), as one
/// list, left to right.
pub(crate) fn members<'a, I>(lines: I, quoting: Quoting) -> Members<'a, I::IntoIter>
where
    I: IntoIterator<Item = &'a [u8]>,
{
    Members {
        lines: lines.into_iter(),
        rest: &[],
        quoting,
    }
}

/// Iterator of [`members`].
#[derive(Debug, Clone)]
pub(crate) struct Members<'a, I> {
    lines: I,
    rest: &'a [u8],
    quoting: Quoting,
}

impl<'a, I> Iterator for Members<'a, I>
where
    I: Iterator<Item = &'a [u8]>,
{
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                // Each line is a list of its own: a quote left open ends
                // with its line.
                self.rest = self.lines.next()?;
                continue;
            }
            let end = member_end(self.rest, self.quoting);
            let member = trim_ows(&self.rest[..end]);
            self.rest = self.rest.get(end + 1..).unwrap_or_default();
            if !member.is_empty() {
                return Some(member);
            }
        }
    }
}

/// The members of every line in `lines`, as one list, right to left: the
/// members of [`members`] in reverse order.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn members_rev<'a, I>(lines: I, quoting: Quoting) -> MembersRev<'a, I::IntoIter>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: DoubleEndedIterator,
{
    MembersRev {
        lines: lines.into_iter(),
        rest: None,
        separators: Vec::new(),
        quoted_line: false,
        quoting,
    }
}

/// Iterator of [`members_rev`].
#[derive(Debug, Clone)]
pub(crate) struct MembersRev<'a, I> {
    lines: I,
    /// What is left of the current line (`None`: take the previous line).
    rest: Option<&'a [u8]>,
    /// For a line with a quote: the separators of `rest`, ascending.
    separators: Vec<usize>,
    quoted_line: bool,
    quoting: Quoting,
}

impl<'a, I> MembersRev<'a, I> {
    fn load(&mut self, line: &'a [u8]) {
        self.rest = Some(line);
        self.quoted_line = self.quoting == Quoting::Rfc9110 && line.contains(&b'"');
        if self.quoted_line {
            // Whether a comma separates depends on everything left of it:
            // one forward pass finds the separators.
            self.separators.clear();
            let mut at = 0;
            while at < line.len() {
                let end = at + member_end(&line[at..], self.quoting);
                if end < line.len() {
                    self.separators.push(end);
                }
                at = end + 1;
            }
        }
    }
}

impl<'a, I> Iterator for MembersRev<'a, I>
where
    I: DoubleEndedIterator<Item = &'a [u8]>,
{
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let Some(rest) = self.rest else {
                let line = self.lines.next_back()?;
                self.load(line);
                continue;
            };
            let separator = if self.quoted_line {
                self.separators.pop()
            } else {
                rest.iter().rposition(|&b| b == b',')
            };
            let member = match separator {
                Some(at) => {
                    self.rest = Some(&rest[..at]);
                    &rest[at + 1..]
                }
                None => {
                    self.rest = None;
                    rest
                }
            };
            let member = trim_ows(member);
            if !member.is_empty() {
                return Some(member);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn forward<'a>(lines: &[&'a str], quoting: Quoting) -> Vec<&'a str> {
        members(lines.iter().map(|l| l.as_bytes()), quoting)
            .map(|m| std::str::from_utf8(m).unwrap())
            .collect()
    }

    fn reverse<'a>(lines: &[&'a str], quoting: Quoting) -> Vec<&'a str> {
        members_rev(lines.iter().map(|l| l.as_bytes()), quoting)
            .map(|m| std::str::from_utf8(m).unwrap())
            .collect()
    }

    // RFC 9110 §5.6.1: empty members and OWS are tolerated; §5.3: all lines
    // are one list.
    #[test]
    fn members_of_all_lines_without_empty_ones() {
        let lines = [" a ,, b\t", "", " , ", "c", ","];
        assert_eq!(forward(&lines, Quoting::Rfc9110), ["a", "b", "c"]);
        assert_eq!(reverse(&lines, Quoting::Rfc9110), ["c", "b", "a"]);
        assert!(forward(&[], Quoting::Rfc9110).is_empty());
        assert!(reverse(&[" ", ",,"], Quoting::Rfc9110).is_empty());
    }

    // RFC 9110 §5.6.4: a comma or an escaped quote inside a quoted-string
    // belongs to the member.
    #[test]
    fn quoted_strings_keep_their_commas() {
        let lines = [r#"for="[::1]:80,x", a="x\", y", b"#];
        let expected = [r#"for="[::1]:80,x""#, r#"a="x\", y""#, "b"];
        assert_eq!(forward(&lines, Quoting::Rfc9110), expected);
        let mut reversed = expected;
        reversed.reverse();
        assert_eq!(reverse(&lines, Quoting::Rfc9110), reversed);
        // Without quoting (the W3C lists), every comma separates.
        assert_eq!(
            forward(&[r#"a="x,y""#], Quoting::None),
            [r#"a="x"#, r#"y""#]
        );
        assert_eq!(
            reverse(&[r#"a="x,y""#], Quoting::None),
            [r#"y""#, r#"a="x"#]
        );
    }

    // A quote left open ends with its line.
    #[test]
    fn an_open_quote_ends_with_its_line() {
        let lines = [r#"a="open, b"#, "c, d"];
        assert_eq!(
            forward(&lines, Quoting::Rfc9110),
            [r#"a="open, b"#, "c", "d"]
        );
        assert_eq!(
            reverse(&lines, Quoting::Rfc9110),
            ["d", "c", r#"a="open, b"#]
        );
    }

    #[test]
    fn ows_is_space_and_tab_only() {
        assert_eq!(trim_ows(b" \ta b\t "), b"a b");
        assert_eq!(trim_ows(b" \t "), b"");
        assert_eq!(trim_ows(b"x"), b"x");
    }

    fn line() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                Just(b','),
                Just(b'"'),
                Just(b'\\'),
                Just(b' '),
                Just(b'\t'),
                Just(b'a'),
                Just(b'='),
                any::<u8>(),
            ],
            0..24,
        )
    }

    proptest! {
        // Forward and reverse agree, for either quoting, on any bytes.
        #[test]
        fn forward_and_reverse_agree(lines in proptest::collection::vec(line(), 0..5)) {
            for quoting in [Quoting::Rfc9110, Quoting::None] {
                let refs = || lines.iter().map(Vec::as_slice);
                let mut forward: Vec<&[u8]> = members(refs(), quoting).collect();
                let reverse: Vec<&[u8]> = members_rev(refs(), quoting).collect();
                forward.reverse();
                prop_assert_eq!(&forward, &reverse);
                for member in &forward {
                    prop_assert!(!member.is_empty());
                    prop_assert_eq!(trim_ows(member), *member);
                }
                // Without a quote, a member is exactly a trimmed piece
                // between commas.
                if quoting == Quoting::None || !lines.iter().any(|l| l.contains(&b'"')) {
                    let split: Vec<&[u8]> = refs()
                        .flat_map(|l| l.split(|&b| b == b','))
                        .map(trim_ows)
                        .filter(|m| !m.is_empty())
                        .rev()
                        .collect();
                    prop_assert_eq!(&forward, &split);
                }
            }
        }
    }
}
