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
//! `Forwarded` and `X-Forwarded-For`, read from the nearest proxy); on
//! well-formed lines both yield the same members, trimmed, as slices of the
//! field values. Each is anchored at the end it starts from, so a malformed
//! part (a quote left open) never swallows what lies on the other side of
//! it in that direction: see [`members_rev`]. Nothing is allocated.

/// Whether quoted-strings hide commas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quoting {
    /// RFC 9110 §5.6.4: a comma inside `"..."` (with `\` escapes) is not a
    /// separator.
    #[cfg_attr(
        not(any(
            feature = "jwt-auth",
            feature = "cache-headers",
            feature = "rate-limit"
        )),
        allow(dead_code)
    )]
    Rfc9110,
    /// Every comma separates (the W3C lists, `X-Forwarded-For`).
    #[cfg_attr(not(any(feature = "otel", feature = "rate-limit")), allow(dead_code))]
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

/// The members of every line in `lines`, as one list, right to left.
///
/// Each line is read from its right end: a quoted-string is recognised by
/// its closing quote first, and an unescaped quote before it opens it
/// (a quote preceded by an odd number of `\` is escaped). On well-formed
/// lines this yields the members of [`members`] in reverse order. On a
/// line with a quote left open, each direction is anchored where it
/// starts: forward reading takes the rest of the line into the open
/// member, reverse reading takes the start of the line. So what a proxy
/// appended to the right of a client's malformed text (RFC 7239 §4,
/// `X-Forwarded-For`) is always read whole by the reverse walk.
#[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
pub(crate) fn members_rev<'a, I>(lines: I, quoting: Quoting) -> MembersRev<'a, I::IntoIter>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: DoubleEndedIterator,
{
    MembersRev {
        lines: lines.into_iter(),
        rest: None,
        quoting,
        keep_empty: false,
    }
}

/// [`members_rev`], empty members included (trimmed to nothing): for a
/// parser that treats an empty element as malformed rather than skipping
/// it (the client-IP walk stops there).
#[cfg_attr(not(feature = "rate-limit"), allow(dead_code))]
pub(crate) fn elements_rev<'a, I>(lines: I, quoting: Quoting) -> MembersRev<'a, I::IntoIter>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: DoubleEndedIterator,
{
    MembersRev {
        keep_empty: true,
        ..members_rev(lines, quoting)
    }
}

/// Iterator of [`members_rev`] and [`elements_rev`].
#[derive(Debug, Clone)]
pub(crate) struct MembersRev<'a, I> {
    lines: I,
    /// What is left of the current line (`None`: take the previous line).
    rest: Option<&'a [u8]>,
    quoting: Quoting,
    keep_empty: bool,
}

/// The index of the comma that starts the last member of `list`, read
/// from the right (see [`members_rev`]); `None` when it is the only one.
fn member_start_rev(list: &[u8], quoting: Quoting) -> Option<usize> {
    if quoting == Quoting::None {
        return list.iter().rposition(|&b| b == b',');
    }
    let mut quoted = false;
    for i in (0..list.len()).rev() {
        match list[i] {
            b'"' if quoted => {
                let backslashes = list[..i].iter().rev().take_while(|&&b| b == b'\\').count();
                quoted = backslashes % 2 == 1;
            }
            b'"' => quoted = true,
            b',' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

impl<'a, I> Iterator for MembersRev<'a, I>
where
    I: DoubleEndedIterator<Item = &'a [u8]>,
{
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let Some(rest) = self.rest else {
                self.rest = Some(self.lines.next_back()?);
                continue;
            };
            let member = match member_start_rev(rest, self.quoting) {
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
            if self.keep_empty || !member.is_empty() {
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

    // A quote left open ends with its line; each direction is anchored at
    // the end it starts from (a proxy's entry appended on the right is read
    // whole by the reverse walk, RFC 7239 §4).
    #[test]
    fn an_open_quote_ends_with_its_line_and_each_walk_is_anchored() {
        let lines = [r#"a="open, b"#, "c, d"];
        assert_eq!(
            forward(&lines, Quoting::Rfc9110),
            [r#"a="open, b"#, "c", "d"]
        );
        assert_eq!(
            reverse(&lines, Quoting::Rfc9110),
            ["d", "c", "b", r#"a="open"#]
        );
        // The client's unbalanced quote never swallows the proxy's entry.
        for client in [r#"for=9.9.9.9;x=""#, r#"for=9.9.9.9;x="\""#, r#"x=a""#] {
            let line = format!("{client}, for=203.0.113.50");
            assert_eq!(
                reverse(&[line.as_str()], Quoting::Rfc9110)[0],
                "for=203.0.113.50"
            );
        }
    }

    #[test]
    fn elements_rev_keeps_empty_elements() {
        let lines = ["a,, b", ""];
        let got: Vec<&[u8]> =
            elements_rev(lines.iter().map(|l| l.as_bytes()), Quoting::None).collect();
        assert_eq!(got, [&b""[..], b"b", b"", b"a"]);
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

    /// A well-formed list line: tokens and quoted-strings (with escapes),
    /// OWS and empty members.
    fn well_formed_line() -> impl Strategy<Value = Vec<u8>> {
        let member = prop_oneof![
            "[a-z0-9=.:;\\[\\]-]{0,6}".prop_map(String::into_bytes),
            (
                "[a-z=]{0,3}",
                proptest::collection::vec(
                    prop_oneof![
                        Just("a".to_owned()),
                        Just(",".to_owned()),
                        Just(" ".to_owned()),
                        Just("\\\"".to_owned()),
                        Just("\\\\".to_owned()),
                    ],
                    0..5
                )
            )
                .prop_map(|(name, parts)| format!("{name}\"{}\"", parts.concat()).into_bytes()),
        ];
        let ows = prop_oneof![Just(""), Just(" "), Just("\t "), Just(" \t")];
        proptest::collection::vec((ows.clone(), member, ows), 0..5).prop_map(|members| {
            members
                .into_iter()
                .map(|(a, m, b)| [a.as_bytes(), &m, b.as_bytes()].concat())
                .collect::<Vec<_>>()
                .join(&b","[..])
        })
    }

    proptest! {
        // Forward and reverse agree on well-formed lines, for either quoting.
        #[test]
        fn forward_and_reverse_agree(lines in proptest::collection::vec(well_formed_line(), 0..5)) {
            for quoting in [Quoting::Rfc9110, Quoting::None] {
                let refs = || lines.iter().map(Vec::as_slice);
                let mut forward: Vec<&[u8]> = members(refs(), quoting).collect();
                let reverse: Vec<&[u8]> = members_rev(refs(), quoting).collect();
                forward.reverse();
                prop_assert_eq!(&forward, &reverse);
            }
        }

        // On any bytes: members are trimmed and non-empty; without quotes a
        // member is exactly a trimmed piece between commas; and the reverse
        // walk reads a member appended on the right whole, whatever the
        // bytes to its left (right anchoring).
        #[test]
        fn any_bytes_members_and_right_anchoring(lines in proptest::collection::vec(line(), 0..5)) {
            for quoting in [Quoting::Rfc9110, Quoting::None] {
                let refs = || lines.iter().map(Vec::as_slice);
                let forward: Vec<&[u8]> = members(refs(), quoting).collect();
                let reverse: Vec<&[u8]> = members_rev(refs(), quoting).collect();
                for member in forward.iter().chain(&reverse) {
                    prop_assert!(!member.is_empty());
                    prop_assert_eq!(trim_ows(member), *member);
                }
                if quoting == Quoting::None || !lines.iter().any(|l| l.contains(&b'"')) {
                    let split: Vec<&[u8]> = refs()
                        .flat_map(|l| l.split(|&b| b == b','))
                        .map(trim_ows)
                        .filter(|m| !m.is_empty())
                        .rev()
                        .collect();
                    prop_assert_eq!(&reverse, &split);
                    let mut forward = forward.clone();
                    forward.reverse();
                    prop_assert_eq!(&forward, &split);
                }
                if let Some(last) = lines.last() {
                    let mut appended = last.clone();
                    appended.extend_from_slice(b", for=\"[2001:db8::1]:80\"");
                    let first = members_rev([appended.as_slice()], quoting).next();
                    if quoting == Quoting::Rfc9110 {
                        prop_assert_eq!(first, Some(&b"for=\"[2001:db8::1]:80\""[..]));
                    }
                }
            }
        }
    }
}
