//! W3C trace context and baggage in HTTP headers, through an OpenTelemetry
//! propagator, with strict `traceparent`, `tracestate` and `baggage`
//! validation in front of it.

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::Context;
use opentelemetry::global;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};

use crate::list::{self, Quoting};

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";
const BAGGAGE: &str = "baggage";

/// The most list members a `tracestate` may have (W3C Trace Context §3.3.1.1).
const MAX_TRACESTATE_MEMBERS: usize = 32;
/// The most list members of `baggage` passed on (W3C Baggage §3.3.3 Limits).
const MAX_BAGGAGE_MEMBERS: usize = 64;
/// The most bytes of `baggage` passed on (W3C Baggage §3.3.3 Limits).
const MAX_BAGGAGE_BYTES: usize = 8192;

/// Which propagator reads and writes the headers.
#[derive(Clone, Default)]
pub(crate) enum Propagation {
    /// `opentelemetry::global::get_text_map_propagator`, looked up on every
    /// request, so a propagator installed after the layer is built is used.
    #[default]
    Global,
    Explicit(Arc<dyn TextMapPropagator + Send + Sync>),
}

impl fmt::Debug for Propagation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Global => f.write_str("Global"),
            Self::Explicit(p) => f.debug_tuple("Explicit").field(p).finish(),
        }
    }
}

impl Propagation {
    pub(crate) fn explicit(propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        Self::Explicit(Arc::new(propagator))
    }

    /// The context the request's headers carry, on top of an empty context:
    /// the server span of a request is parented by what came over the wire
    /// and nothing else. With `baggage` false the propagator never sees the
    /// `baggage` header (the incoming context is not continued).
    pub(crate) fn extract(&self, headers: &HeaderMap, baggage: bool) -> Context {
        let extractor = StrictHeaders::new(headers, baggage);
        let base = Context::new();
        match self {
            Self::Global => {
                global::get_text_map_propagator(|p| p.extract_with_context(&base, &extractor))
            }
            Self::Explicit(p) => p.extract_with_context(&base, &extractor),
        }
    }

    /// Writes `cx` into `headers`; headers already present are kept.
    pub(crate) fn inject(&self, cx: &Context, headers: &mut HeaderMap) {
        let mut injector = KeepingInjector(headers);
        match self {
            Self::Global => {
                global::get_text_map_propagator(|p| p.inject_context(cx, &mut injector))
            }
            Self::Explicit(p) => p.inject_context(cx, &mut injector),
        }
    }
}

/// Request headers as an [`Extractor`], hiding a `traceparent` that is not
/// strictly valid (and its `tracestate` with it), and a `tracestate` that
/// is not (more than 32 members, bad keys or values, duplicate keys).
/// Several `tracestate` or `baggage` lines are combined, as both
/// specifications allow. `baggage` is shown only as its valid list members
/// (see [`valid_baggage`]), so that a propagator never sees, and never logs,
/// a member it could not parse.
struct StrictHeaders<'a> {
    headers: &'a HeaderMap,
    trace_context: bool,
    tracestate: Combined<'a>,
    /// The valid members of `baggage`, checked the first time a propagator
    /// asks (one that never reads baggage costs nothing); set to `None` from
    /// the start when the propagator may not see baggage at all.
    baggage: std::cell::OnceCell<Option<String>>,
}

enum Combined<'a> {
    None,
    One(&'a str),
    Joined(String),
}

impl<'a> Combined<'a> {
    fn of(headers: &'a HeaderMap, name: &str) -> Self {
        let mut lines = headers.get_all(name).iter().filter_map(|v| v.to_str().ok());
        let Some(first) = lines.next() else {
            return Self::None;
        };
        match lines.next() {
            None => Self::One(first),
            Some(second) => {
                let mut joined = format!("{first},{second}");
                for line in lines {
                    joined.push(',');
                    joined.push_str(line);
                }
                Self::Joined(joined)
            }
        }
    }

    fn get(&self) -> Option<&str> {
        match self {
            Self::None => None,
            Self::One(s) => Some(s),
            Self::Joined(s) => Some(s),
        }
    }
}

impl<'a> StrictHeaders<'a> {
    fn new(headers: &'a HeaderMap, baggage: bool) -> Self {
        let mut lines = headers.get_all(TRACEPARENT).iter();
        let trace_context = match (lines.next(), lines.next()) {
            (Some(only), None) => valid_traceparent(only.as_bytes()),
            // Absent, or several lines (which W3C Trace Context §3.2 makes invalid).
            _ => false,
        };
        let tracestate = if trace_context {
            // A line that is not ASCII text is an invalid member: the whole
            // list goes, not just that line.
            let all_text = headers
                .get_all(TRACESTATE)
                .iter()
                .all(|v| v.to_str().is_ok());
            let combined = Combined::of(headers, TRACESTATE);
            match combined.get() {
                Some(s) if !all_text || !valid_tracestate(s) => Combined::None,
                _ => combined,
            }
        } else {
            Combined::None
        };
        Self {
            headers,
            trace_context,
            tracestate,
            baggage: if baggage {
                std::cell::OnceCell::new()
            } else {
                std::cell::OnceCell::from(None)
            },
        }
    }
}

impl Extractor for StrictHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key.eq_ignore_ascii_case(TRACEPARENT) {
            if !self.trace_context {
                return None;
            }
        } else if key.eq_ignore_ascii_case(TRACESTATE) {
            return self.tracestate.get();
        } else if key.eq_ignore_ascii_case(BAGGAGE) {
            // A line that is not ASCII text is dropped (`Combined::of`); its
            // members cannot be valid anyway.
            return self
                .baggage
                .get_or_init(|| {
                    Combined::of(self.headers, BAGGAGE)
                        .get()
                        .and_then(valid_baggage)
                })
                .as_deref();
        }
        self.headers.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.keys().map(HeaderName::as_str).collect()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        self.get(key).map(|value| vec![value])
    }
}

/// W3C Trace Context §3.3: at most 32 list members `key=value` with unique
/// keys; `key` is `lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`
/// or `tenant@system`; `value` is 1 to 256 printable ASCII characters
/// without `,` or `=`, not ending in a space. Empty members are allowed.
pub(crate) fn valid_tracestate(value: &str) -> bool {
    fn key_char(b: u8) -> bool {
        matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/')
    }
    fn valid_key(key: &[u8]) -> bool {
        match key.iter().position(|&b| b == b'@') {
            None => {
                key.len() <= 256
                    && key.first().is_some_and(u8::is_ascii_lowercase)
                    && key.iter().copied().all(key_char)
            }
            Some(at) => {
                let (tenant, system) = (&key[..at], &key[at + 1..]);
                (1..=241).contains(&tenant.len())
                    && tenant.iter().copied().all(key_char)
                    && (1..=14).contains(&system.len())
                    && system[0].is_ascii_lowercase()
                    && system.iter().copied().all(key_char)
            }
        }
    }
    fn valid_value(value: &[u8]) -> bool {
        (1..=256).contains(&value.len())
            && value.last() != Some(&b' ')
            && value
                .iter()
                .all(|&b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
    }
    let mut keys: Vec<&[u8]> = Vec::new();
    // W3C Trace Context §3.3.1.1: a list without quoted strings.
    for member in list::members([value.as_bytes()], Quoting::None) {
        let Some(at) = member.iter().position(|&b| b == b'=') else {
            return false;
        };
        let (key, value) = (&member[..at], &member[at + 1..]);
        if !valid_key(key) || !valid_value(value) || keys.contains(&key) {
            return false;
        }
        if keys.len() == MAX_TRACESTATE_MEMBERS {
            return false;
        }
        keys.push(key);
    }
    true
}

/// The valid list members of a `baggage` header (W3C Baggage §3.3.1), in
/// order and without optional whitespace, joined by `,`; `None` if there
/// are none.
///
/// A list member is `key OWS "=" OWS value *( OWS ";" OWS property )`, a
/// property `key OWS "=" OWS value` or `key`; `key` is an RFC 9110 token
/// and `value` zero or more baggage octets (printable ASCII without space,
/// `"`, `,`, `;` and `\`). Percent-encoding in keys and values must be
/// `%` and two hex digits, and must decode to UTF-8. An invalid member is
/// dropped and the others are kept: members are separated by `,`, which no
/// key, value or property may contain, so each is judged on its own. The
/// first 64 valid members that fit, together, in 8192 bytes are kept
/// (W3C Baggage §3.3.3); the rest are dropped whole.
pub(crate) fn valid_baggage(value: &str) -> Option<String> {
    let mut out = String::new();
    let mut members = 0;
    // W3C Baggage §3.3.1: a list without quoted strings; empty members
    // (never valid) are skipped.
    for member in list::members([value.as_bytes()], Quoting::None) {
        // A slice of a `str` cut at ASCII commas and OWS: still UTF-8.
        let member = std::str::from_utf8(member).unwrap_or_default();
        if members == MAX_BAGGAGE_MEMBERS {
            break;
        }
        let start = out.len();
        if members > 0 {
            out.push(',');
        }
        if baggage_member(member, &mut out) && out.len() <= MAX_BAGGAGE_BYTES {
            members += 1;
        } else {
            out.truncate(start);
        }
    }
    (members > 0).then_some(out)
}

/// Appends `member` without its optional whitespace to `out` if it is a
/// valid baggage list member; returns whether it is (`out` may then hold
/// part of it).
fn baggage_member(member: &str, out: &mut String) -> bool {
    let mut parts = member.split(';');
    let Some((key, value)) = parts.next().and_then(|kv| kv.split_once('=')) else {
        return false;
    };
    let (key, value) = (trim_ows(key), trim_ows(value));
    if !baggage_key(key) || !baggage_value(value) {
        return false;
    }
    out.push_str(key);
    out.push('=');
    out.push_str(value);
    for property in parts {
        let (key, value) = match property.split_once('=') {
            Some((key, value)) => (trim_ows(key), Some(trim_ows(value))),
            None => (trim_ows(property), None),
        };
        if !baggage_key(key) || !value.is_none_or(baggage_value) {
            return false;
        }
        out.push(';');
        out.push_str(key);
        if let Some(value) = value {
            out.push('=');
            out.push_str(value);
        }
    }
    true
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// An RFC 9110 §5.6.2 token whose percent-encoding decodes to UTF-8.
fn baggage_key(key: &str) -> bool {
    !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        && percent_decodes(key.as_bytes())
}

/// `*baggage-octet` whose percent-encoding decodes to UTF-8.
fn baggage_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e))
        && percent_decodes(value.as_bytes())
}

/// Whether every `%` starts a `%XX` escape and the decoded bytes are UTF-8.
fn percent_decodes(bytes: &[u8]) -> bool {
    // `percent_decode` passes a `%` without two hex digits through as is:
    // check those first.
    let escapes_are_whole = bytes.iter().enumerate().all(|(i, &b)| {
        b != b'%'
            || bytes
                .get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    escapes_are_whole
        && percent_encoding::percent_decode(bytes)
            .decode_utf8()
            .is_ok()
}

/// W3C Trace Context §3.2: `version-traceid-parentid-flags`, lowercase hex,
/// version `ff` invalid, all-zero ids invalid; version `00` has exactly
/// these four fields, a later version may append `-...`, which must be
/// header text like the rest (no control characters, no bytes past ASCII:
/// the propagator could not read such a value, as for `tracestate`).
pub(crate) fn valid_traceparent(value: &[u8]) -> bool {
    fn lower_hex(bytes: &[u8]) -> bool {
        bytes.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
    fn not_zero(bytes: &[u8]) -> bool {
        bytes.iter().any(|&b| b != b'0')
    }
    const LEN: usize = 55;
    if value.len() < LEN {
        return false;
    }
    let (version, trace_id, span_id, flags) =
        (&value[0..2], &value[3..35], &value[36..52], &value[53..55]);
    value[2] == b'-'
        && value[35] == b'-'
        && value[52] == b'-'
        && lower_hex(version)
        && version != b"ff"
        && lower_hex(trace_id)
        && not_zero(trace_id)
        && lower_hex(span_id)
        && not_zero(span_id)
        && lower_hex(flags)
        && if version == b"00" {
            value.len() == LEN
        } else {
            value.len() == LEN
                || (value[LEN] == b'-'
                    && value[LEN..]
                        .iter()
                        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b)))
        }
}

/// Outgoing request headers as an [`Injector`] that leaves a header the
/// caller already set alone, and skips values that are not valid header
/// text.
struct KeepingInjector<'a>(&'a mut HeaderMap);

impl Injector for KeepingInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        let Ok(name) = HeaderName::from_bytes(key.as_bytes()) else {
            return;
        };
        if self.0.contains_key(&name) {
            return;
        }
        if let Ok(value) = HeaderValue::try_from(value) {
            self.0.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{valid_baggage, valid_traceparent, valid_tracestate};

    #[test]
    fn baggage_grammar() {
        // W3C Baggage §3.3.1: list-member = key OWS "=" OWS value
        // *( OWS ";" OWS property ); valid members are kept, without OWS.
        for (header, kept) in [
            ("k=v", Some("k=v")),
            ("k=", Some("k=")),
            (" k \t= v ; p ;q = 1 ", Some("k=v;p;q=1")),
            ("k=a=b", Some("k=a=b")),
            ("k=caf%C3%A9,k2=%41", Some("k=caf%C3%A9,k2=%41")),
            ("bad,k=v,=v,k2=a b,k3=\"q\",k4=a\\b", Some("k=v")),
            ("k=%ff", None),
            ("k=%4", None),
            ("k%ff=v", None),
            ("k=v;", None),
            ("k=v;=x", None),
            ("k=v;p=a b", None),
            ("k v=1", None),
            ("", None),
            (",,", None),
        ] {
            assert_eq!(valid_baggage(header).as_deref(), kept, "{header:?}");
        }
        let key_chars = "!#$&'*+-.^_`|~09Az";
        let value_chars = "!#$&'()*+-./:<=>?@[]^_`{|}~";
        let member = format!("{key_chars}={value_chars}");
        assert_eq!(valid_baggage(&member), Some(member.clone()));
        // W3C Baggage §3.3.3: 64 members and 8192 bytes; whole members only.
        let many: Vec<String> = (0..70).map(|i| format!("k{i}=v")).collect();
        let kept = valid_baggage(&many.join(",")).unwrap();
        assert_eq!(kept, many[..64].join(","));
        let big = format!("a={},b={},c=1", "x".repeat(5000), "y".repeat(5000));
        let kept = valid_baggage(&big).unwrap();
        assert_eq!(kept, format!("a={},c=1", "x".repeat(5000)));
        let exact = format!("a={}", "x".repeat(8190));
        assert_eq!(valid_baggage(&exact).as_deref(), Some(exact.as_str()));
        assert_eq!(valid_baggage(&format!("{exact}x")), None);
    }

    #[test]
    fn tracestate_grammar() {
        // W3C Trace Context §3.3.1: list-member grammar and 32-member limit.
        for ok in [
            "",
            "vendor=abc",
            "a=1, b=2 ,,c=x y",
            "tenant@sys=v",
            "k=!\"#$%&'()*+-./:;<>?@[]^_`{|}~",
        ] {
            assert!(valid_tracestate(ok), "{ok:?} refused");
        }
        let max: Vec<String> = (0..32).map(|i| format!("k{i}=v")).collect();
        assert!(valid_tracestate(&max.join(",")));
        let over: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert!(!valid_tracestate(&over.join(",")));
        for bad in [
            "=novalue",
            "novalue",
            "Upper=1",
            "1key=1",
            "k=",
            "k=a=b",
            "a=1,a=2",
            "@sys=1",
            "t@=1",
            "k=caf\u{e9}",
        ] {
            assert!(!valid_tracestate(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn traceparent_grammar() {
        // W3C Trace Context §3.2.2: version-format.
        let ok = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(valid_traceparent(ok.as_bytes()));
        // A future version may append fields after a dash.
        assert!(valid_traceparent(
            b"cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"
        ));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-", // v00: exactly 4 fields
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // version ff
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  // zero span id
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",  // uppercase
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // uppercase version
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A",  // uppercase flags
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",  // bad hex
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // sign
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  // separator
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", // no dash after flags
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",   // short span id
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-caf\u{e9}", // not ASCII
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-\u{7f}", // DEL
        ] {
            assert!(!valid_traceparent(bad.as_bytes()), "{bad:?} accepted");
        }
    }
}
