//! The `Idempotency-Key` request header: an RFC 9651 sf-string
//! (draft-ietf-httpapi-idempotency-key-header-07 §2.1), or a bare value of
//! token characters, bounded in length.

use std::fmt;

use http::HeaderValue;
use http::header::GetAll;

/// Default longest key accepted, in characters (Stripe's limit).
pub const DEFAULT_MAX_KEY_LENGTH: usize = 255;

/// A validated `Idempotency-Key`: 1 to the configured maximum printable
/// ASCII characters (`%x20-7E`, what an RFC 9651 sf-string can hold), as
/// the client meant it (quotes removed, escapes resolved).
///
/// The layer puts it in the request extensions of the requests it lets
/// through, for handlers and logs.
///
/// ```
/// use tower_edge::idempotency::IdempotencyKey;
///
/// // RFC 9651 sf-string (draft-07 §2.1), the form the draft specifies.
/// let key = IdempotencyKey::parse(br#""8e03978e-40d5-43e8-bc93-6894a57f9324""#, 255).unwrap();
/// assert_eq!(key.as_str(), "8e03978e-40d5-43e8-bc93-6894a57f9324");
/// // A bare value of token characters, as many clients send it.
/// let key = IdempotencyKey::parse(b"8e03978e-40d5-43e8-bc93-6894a57f9324", 255).unwrap();
/// assert_eq!(key.as_str(), "8e03978e-40d5-43e8-bc93-6894a57f9324");
/// // Escapes are resolved; parameters (none defined) are ignored.
/// assert_eq!(IdempotencyKey::parse(br#""a\"b";v=1"#, 255).unwrap().as_str(), r#"a"b"#);
/// assert!(IdempotencyKey::parse(b"\"unterminated", 255).is_err());
/// assert!(IdempotencyKey::parse(b"\"\"", 255).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(Box<str>);

/// Why an `Idempotency-Key` was refused (each answered 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidKey {
    /// The header came on more than one field line (draft-07 §2.1: one
    /// Item, never a list).
    Repeated,
    /// Not an sf-string nor a bare token value (RFC 9651 §4.2).
    Malformed,
    /// An empty key (`""`).
    Empty,
    /// Longer than the configured maximum.
    TooLong,
}

impl InvalidKey {
    /// The `detail` of the 400 answer.
    pub const fn detail(self) -> &'static str {
        match self {
            Self::Repeated => "the Idempotency-Key header must be sent once",
            Self::Malformed => "the Idempotency-Key header must be a structured-field string",
            Self::Empty => "the Idempotency-Key must not be empty",
            Self::TooLong => "the Idempotency-Key is too long",
        }
    }
}

impl fmt::Display for InvalidKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for InvalidKey {}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("IdempotencyKey").field(&&*self.0).finish()
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl IdempotencyKey {
    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses one field value: an RFC 9651 Item whose bare item is a
    /// String (§4.2.5), with optional parameters (validated, ignored: the
    /// draft defines none), or — leniently, since many clients send UUIDs
    /// unquoted — a bare value of 1 or more RFC 9110 `tchar`s, `:` or `/`.
    /// Leading and trailing spaces are discarded (RFC 9651 §4.2). The key
    /// is 1 to `max_len` characters.
    ///
    /// # Errors
    ///
    /// [`InvalidKey::Malformed`], [`InvalidKey::Empty`] or
    /// [`InvalidKey::TooLong`].
    pub fn parse(value: &[u8], max_len: usize) -> Result<Self, InvalidKey> {
        let mut p = Parser { s: value, i: 0 };
        p.skip_sp();
        let key = match p.peek() {
            Some(b'"') => p.sf_string(max_len)?,
            Some(_) => p.bare(max_len)?,
            None => return Err(InvalidKey::Malformed),
        };
        p.parameters()?;
        p.skip_sp();
        if p.i != p.s.len() {
            return Err(InvalidKey::Malformed);
        }
        if key.is_empty() {
            return Err(InvalidKey::Empty);
        }
        Ok(Self(key.into_boxed_str()))
    }

    /// The key of a request's `Idempotency-Key` field lines: `None`
    /// without one, an error for two lines or more (draft-07 §2.1) or a
    /// bad value.
    ///
    /// # Errors
    ///
    /// See [`InvalidKey`].
    pub fn from_lines(
        lines: GetAll<'_, HeaderValue>,
        max_len: usize,
    ) -> Result<Option<Self>, InvalidKey> {
        let mut lines = lines.iter();
        let Some(first) = lines.next() else {
            return Ok(None);
        };
        if lines.next().is_some() {
            return Err(InvalidKey::Repeated);
        }
        Self::parse(first.as_bytes(), max_len).map(Some)
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    /// RFC 9651 §4.2.5: `DQUOTE *( unescaped / escaped ) DQUOTE`.
    fn sf_string(&mut self, max_len: usize) -> Result<String, InvalidKey> {
        self.i += 1;
        let mut out = String::new();
        loop {
            let b = self.peek().ok_or(InvalidKey::Malformed)?;
            self.i += 1;
            let c = match b {
                b'"' => return Ok(out),
                b'\\' => match self.peek() {
                    Some(e @ (b'"' | b'\\')) => {
                        self.i += 1;
                        e
                    }
                    _ => return Err(InvalidKey::Malformed),
                },
                0x20..=0x7e => b,
                _ => return Err(InvalidKey::Malformed),
            };
            if out.len() == max_len {
                // Still check the rest is well formed: a malformed value
                // is a malformed value, however long.
                self.rest_of_string()?;
                return Err(InvalidKey::TooLong);
            }
            out.push(char::from(c));
        }
    }

    fn rest_of_string(&mut self) -> Result<(), InvalidKey> {
        loop {
            let b = self.peek().ok_or(InvalidKey::Malformed)?;
            self.i += 1;
            match b {
                b'"' => return Ok(()),
                b'\\' => match self.peek() {
                    Some(b'"' | b'\\') => self.i += 1,
                    _ => return Err(InvalidKey::Malformed),
                },
                0x20..=0x7e => {}
                _ => return Err(InvalidKey::Malformed),
            }
        }
    }

    /// The lenient form: `1*( tchar / ":" / "/" )`.
    fn bare(&mut self, max_len: usize) -> Result<String, InvalidKey> {
        let start = self.i;
        while self
            .peek()
            .is_some_and(|b| is_tchar(b) || b == b':' || b == b'/')
        {
            self.i += 1;
        }
        let token = &self.s[start..self.i];
        if token.is_empty() {
            return Err(InvalidKey::Malformed);
        }
        if token.len() > max_len {
            return Err(InvalidKey::TooLong);
        }
        // ASCII by construction.
        Ok(token.iter().map(|&b| char::from(b)).collect())
    }

    /// RFC 9651 §4.2.3.2: `*( ";" *SP key [ "=" bare-item ] )`.
    fn parameters(&mut self) -> Result<(), InvalidKey> {
        loop {
            let save = self.i;
            self.skip_sp();
            if self.peek() != Some(b';') {
                self.i = save;
                return Ok(());
            }
            self.i += 1;
            self.skip_sp();
            // key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )
            match self.peek() {
                Some(b'a'..=b'z' | b'*') => self.i += 1,
                _ => return Err(InvalidKey::Malformed),
            }
            while self.peek().is_some_and(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b)
            }) {
                self.i += 1;
            }
            if self.peek() == Some(b'=') {
                self.i += 1;
                self.bare_item()?;
            }
        }
    }

    /// RFC 9651 §4.2.3.1, any bare item (validated, value dropped).
    fn bare_item(&mut self) -> Result<(), InvalidKey> {
        match self.peek().ok_or(InvalidKey::Malformed)? {
            b'"' => self.rest_of_string_from_quote(),
            b'-' | b'0'..=b'9' => self.number(),
            b'?' => {
                self.i += 1;
                match self.peek() {
                    Some(b'0' | b'1') => {
                        self.i += 1;
                        Ok(())
                    }
                    _ => Err(InvalidKey::Malformed),
                }
            }
            b'@' => {
                self.i += 1;
                self.number()
            }
            b':' => {
                self.i += 1;
                while self
                    .peek()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
                {
                    self.i += 1;
                }
                if self.peek() == Some(b':') {
                    self.i += 1;
                    Ok(())
                } else {
                    Err(InvalidKey::Malformed)
                }
            }
            b'%' => {
                self.i += 1;
                if self.peek() != Some(b'"') {
                    return Err(InvalidKey::Malformed);
                }
                self.i += 1;
                loop {
                    match self.peek().ok_or(InvalidKey::Malformed)? {
                        b'"' => {
                            self.i += 1;
                            return Ok(());
                        }
                        b'%' => {
                            let hex = self.s.get(self.i + 1..self.i + 3);
                            if !hex.is_some_and(|h| {
                                h.iter()
                                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                            }) {
                                return Err(InvalidKey::Malformed);
                            }
                            self.i += 3;
                        }
                        0x20..=0x7e => self.i += 1,
                        _ => return Err(InvalidKey::Malformed),
                    }
                }
            }
            b if b.is_ascii_alphabetic() || b == b'*' => {
                self.i += 1;
                while self
                    .peek()
                    .is_some_and(|b| is_tchar(b) || b == b':' || b == b'/')
                {
                    self.i += 1;
                }
                Ok(())
            }
            _ => Err(InvalidKey::Malformed),
        }
    }

    fn rest_of_string_from_quote(&mut self) -> Result<(), InvalidKey> {
        self.i += 1;
        self.rest_of_string()
    }

    /// RFC 9651 §4.2.4: an Integer (≤ 15 digits) or a Decimal (≤ 12 integer
    /// and 1 to 3 fractional digits).
    fn number(&mut self) -> Result<(), InvalidKey> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        let int = self.i - start;
        if int == 0 {
            return Err(InvalidKey::Malformed);
        }
        if self.peek() != Some(b'.') {
            return if int <= 15 {
                Ok(())
            } else {
                Err(InvalidKey::Malformed)
            };
        }
        self.i += 1;
        let start = self.i;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
        let frac = self.i - start;
        if int <= 12 && (1..=3).contains(&frac) {
            Ok(())
        } else {
            Err(InvalidKey::Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<String, InvalidKey> {
        IdempotencyKey::parse(s.as_bytes(), 16).map(|k| k.as_str().to_owned())
    }

    // draft-ietf-httpapi-idempotency-key-header-07 §2.1: an Item Structured
    // Header whose value is a String (RFC 9651 §3.3.3, parsed per §4.2.5).
    #[test]
    fn sf_strings_parse_with_escapes_spaces_and_parameters() {
        assert_eq!(parse(r#""abc""#).unwrap(), "abc");
        assert_eq!(parse(r#"  "a b"  "#).unwrap(), "a b");
        assert_eq!(parse(r#""a\\b\"c""#).unwrap(), r#"a\b"c"#);
        assert_eq!(
            parse(r#""k";a=1;b="x";c;d=?1;e=1.5;f=:AQ==:;g=@5;h=tok"#).unwrap(),
            "k"
        );
        assert_eq!(parse(r#""k"; a=%"%c3%bc""#).unwrap(), "k");
    }

    // RFC 9651 §4.2.5: only `\"` and `\\` are escapes; only %x20-7E are
    // allowed; the string must be closed; nothing may follow (§4.2).
    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            r#""abc"#,
            r#""a\nb""#,
            "\"a\tb\"",
            r#""a" "b""#,
            r#""a", "b""#,
            r#""a";"#,
            r#""a";A=1"#,
            r#""a";a=1.2345"#,
            r#""a";a=1234567890123456"#,
            r#""a";a=?2"#,
            r#""a";a=:AQ=="#,
            r#""a";a=%"%C3""#,
            "",
            "   ",
            "a b",
            "a,b",
            "(a)",
            "\"é\"",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(parse(r#""""#), Err(InvalidKey::Empty));
    }

    #[test]
    fn bare_token_values_are_accepted_leniently() {
        assert_eq!(parse("8e03978e-40d5").unwrap(), "8e03978e-40d5");
        assert_eq!(parse("a:b/c;p=1").unwrap(), "a:b/c");
        assert_eq!(parse(" tok ").unwrap(), "tok");
    }

    #[test]
    fn length_is_bounded_in_characters_after_unescaping() {
        assert_eq!(parse(&format!("\"{}\"", "a".repeat(16))).unwrap().len(), 16);
        assert_eq!(
            parse(&format!("\"{}\"", "a".repeat(17))),
            Err(InvalidKey::TooLong)
        );
        assert_eq!(parse(&"a".repeat(17)), Err(InvalidKey::TooLong));
        assert_eq!(
            parse(&format!("\"{}\\\\\"", "a".repeat(15))).unwrap().len(),
            16
        );
        // Too long and malformed: malformed.
        assert_eq!(
            parse(&format!("\"{}", "a".repeat(40))),
            Err(InvalidKey::Malformed)
        );
    }

    // draft-07 §2.1: one Item; two field lines are a list, refused.
    #[test]
    fn two_field_lines_are_refused() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(
            IdempotencyKey::from_lines(headers.get_all("idempotency-key"), 16),
            Ok(None)
        );
        headers.append("idempotency-key", HeaderValue::from_static("\"a\""));
        assert!(
            IdempotencyKey::from_lines(headers.get_all("idempotency-key"), 16)
                .unwrap()
                .is_some()
        );
        headers.append("idempotency-key", HeaderValue::from_static("\"a\""));
        assert_eq!(
            IdempotencyKey::from_lines(headers.get_all("idempotency-key"), 16),
            Err(InvalidKey::Repeated)
        );
    }
}
