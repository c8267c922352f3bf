//! The [`CorrelationId`] type, its validation and generation.

use std::cell::Cell;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;
use pin_project_lite::pin_project;

/// A validated correlation (request) ID.
///
/// The [`CorrelationIdLayer`](super::CorrelationIdLayer) puts one in the
/// request extensions of every request; handlers read it from there (or with
/// the axum extractor, feature `axum`), and it is the `correlation_id` field
/// of the request's tracing span.
///
/// Cloning is cheap (a reference-counted buffer).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CorrelationId(HeaderValue);

/// The value given to [`CorrelationId::from_header_value`] is not usable as
/// an ID: it is empty or holds bytes outside visible ASCII.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a correlation ID must be non-empty visible ASCII")]
pub struct InvalidCorrelationId(());

impl CorrelationId {
    /// Wraps a header value; it must be non-empty visible ASCII
    /// (`0x21..=0x7e`, no spaces, tabs or control characters).
    pub fn from_header_value(value: HeaderValue) -> Result<Self, InvalidCorrelationId> {
        let bytes = value.as_bytes();
        if !bytes.is_empty() && bytes.iter().all(|b| b.is_ascii_graphic()) {
            Ok(Self(value))
        } else {
            Err(InvalidCorrelationId(()))
        }
    }

    /// Wraps a value already known to be non-empty visible ASCII (it passed
    /// [`default_rule`]).
    pub(crate) fn from_visible_ascii(value: HeaderValue) -> Self {
        debug_assert!(!value.is_empty() && value.as_bytes().iter().all(u8::is_ascii_graphic));
        Self(value)
    }

    /// The ID as text.
    pub fn as_str(&self) -> &str {
        // Constructors admit visible ASCII only: valid UTF-8, and the
        // standard check has an ASCII fast path (`to_str` goes byte by byte).
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }

    /// The ID as a header value, ready to be sent.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    pub(crate) fn into_header_value(self) -> HeaderValue {
        self.0
    }

    /// The correlation ID of the request being handled on this task, if any.
    ///
    /// It is set while the [`CorrelationIdLayer`](super::CorrelationIdLayer)'s
    /// inner service is polled, so any code running inside a handler sees it.
    /// Work moved to another task with `tokio::spawn` does not, unless its
    /// future is wrapped with [`with_correlation_id`].
    pub fn current() -> Option<Self> {
        CURRENT.with(|current| {
            let id = current.take();
            let copy = id.clone();
            current.set(id);
            copy
        })
    }
}

impl fmt::Debug for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CorrelationId")
            .field(&self.as_str())
            .finish()
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for CorrelationId {
    type Err = InvalidCorrelationId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value = HeaderValue::from_str(s).map_err(|_| InvalidCorrelationId(()))?;
        Self::from_header_value(value)
    }
}

/// The default acceptance rule: 1 to `max_len` characters of
/// `[A-Za-z0-9._:-]`.
pub(crate) fn default_rule(value: &[u8], max_len: usize) -> bool {
    !value.is_empty() && value.len() <= max_len && value.iter().all(|&b| ALLOWED[usize::from(b)])
}

/// `ALLOWED[b]`: byte `b` may appear in an ID under the default rule. One
/// load per byte instead of five range checks: the rule runs on every
/// request that brings an ID.
static ALLOWED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-');
        b += 1;
    }
    table
};

/// Makes a fresh correlation ID for a request that brought none (or an
/// invalid one).
///
/// Implemented for [`UuidV7`] (the default), [`UuidV4`] and any closure
/// `Fn() -> CorrelationId + Send + Sync + 'static`.
pub trait MakeCorrelationId: Send + Sync + 'static {
    /// A new ID.
    fn make_correlation_id(&self) -> CorrelationId;
}

impl<F> MakeCorrelationId for F
where
    F: Fn() -> CorrelationId + Send + Sync + 'static,
{
    fn make_correlation_id(&self) -> CorrelationId {
        self()
    }
}

/// UUID version 7 (time-ordered, so IDs sort by creation time in logs and
/// databases), from a thread-local random generator. The default.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV7;

/// UUID version 4 (random), from a thread-local random generator.
#[derive(Debug, Clone, Copy, Default)]
pub struct UuidV4;

fn uuid_id(uuid: uuid::Uuid) -> CorrelationId {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid.hyphenated().encode_lower(&mut buf);
    // Reference-counted from the start: one allocation shared by every
    // clone of the ID (request header, extension, response header), where a
    // copied `Vec` would be promoted, with a second allocation, on its
    // first clone.
    let bytes = bytes::Bytes::from_owner(buf);
    // A hyphenated UUID is 36 visible ASCII characters.
    CorrelationId(HeaderValue::from_maybe_shared(bytes).expect("a UUID is a valid header value"))
}

thread_local! {
    /// One UUID v7 context per thread: IDs made on a thread are strictly
    /// increasing (RFC 9562 §6.2, counter method), and no lock is shared
    /// between worker threads (`Uuid::now_v7` takes a process-wide mutex).
    static V7_CONTEXT: uuid::ContextV7 = const { uuid::ContextV7::new() };
}

impl MakeCorrelationId for UuidV7 {
    fn make_correlation_id(&self) -> CorrelationId {
        let uuid = V7_CONTEXT.with(|context| uuid::Uuid::new_v7(uuid::Timestamp::now(context)));
        uuid_id(uuid)
    }
}

impl MakeCorrelationId for UuidV4 {
    fn make_correlation_id(&self) -> CorrelationId {
        uuid_id(uuid::Uuid::new_v4())
    }
}

thread_local! {
    static CURRENT: Cell<Option<CorrelationId>> = const { Cell::new(None) };
}

/// Puts the ID back into its slot and restores the previous current ID when
/// dropped (also on panic).
struct Restore<'a> {
    slot: &'a mut Option<CorrelationId>,
    previous: Option<CorrelationId>,
}

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let previous = self.previous.take();
        *self.slot = CURRENT.with(|current| current.replace(previous));
    }
}

/// Runs `f` with the ID in `slot` (if any) as [`CorrelationId::current`].
///
/// The ID is moved into the thread-local and back, not cloned: entering
/// costs no reference-count traffic, which matters because it happens on
/// every poll of every request.
pub(crate) fn enter<R>(slot: &mut Option<CorrelationId>, f: impl FnOnce() -> R) -> R {
    let previous = CURRENT.with(|current| current.replace(slot.take()));
    let _restore = Restore { slot, previous };
    f()
}

pin_project! {
    /// A future that runs with a correlation ID as
    /// [`CorrelationId::current`]; made by [`with_correlation_id`].
    #[derive(Debug)]
    pub struct WithCorrelationId<F> {
        #[pin]
        future: F,
        id: Option<CorrelationId>,
    }
}

impl<F: Future> Future for WithCorrelationId<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let future = this.future;
        enter(this.id, || future.poll(cx))
    }
}

/// Makes `id` the [`CorrelationId::current`] ID while `future` runs: wrap
/// work handed to `tokio::spawn` so outgoing calls made there still carry
/// the request's ID.
///
/// ```
/// use tower_edge::correlation::{with_correlation_id, CorrelationId};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let id: CorrelationId = "job-42".parse().unwrap();
/// let seen = tokio::spawn(with_correlation_id(id, async { CorrelationId::current() }))
///     .await
///     .unwrap();
/// assert_eq!(seen.unwrap().as_str(), "job-42");
/// # }
/// ```
pub fn with_correlation_id<F: Future>(id: CorrelationId, future: F) -> WithCorrelationId<F> {
    WithCorrelationId {
        future,
        id: Some(id),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_rule_table_matches_the_alphabet_byte_by_byte() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b".-_:".contains(&b);
            assert_eq!(default_rule(&[b], 1), expected, "byte {b:#04x}");
        }
    }

    #[test]
    fn default_rule_accepts_only_the_allowed_alphabet_and_length() {
        // The module's default rule: ^[A-Za-z0-9._:-]{1,128}$ (no CR, LF,
        // tab or quote reaches a header or a log line: CWE-113, CWE-117).
        assert!(default_rule(b"abc-DEF_123.x:y", 128));
        assert!(default_rule(&[b'a'; 128], 128));
        assert!(!default_rule(&[b'a'; 129], 128));
        assert!(!default_rule(b"", 128));
        for bad in [
            &b"a b"[..],
            b"a\tb",
            b"a\r\nb",
            b"a/b",
            b"a\"b",
            "é".as_bytes(),
            b"a;b",
        ] {
            assert!(!default_rule(bad, 128), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_uuids_of_the_right_version() {
        let v7 = UuidV7.make_correlation_id();
        let parsed = uuid::Uuid::parse_str(v7.as_str()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(v7.as_str().len(), 36);
        let v4 = UuidV4.make_correlation_id();
        assert_eq!(
            uuid::Uuid::parse_str(v4.as_str())
                .unwrap()
                .get_version_num(),
            4
        );
        assert_ne!(UuidV7.make_correlation_id(), UuidV7.make_correlation_id());
    }

    #[test]
    fn uuid_v7_ids_made_on_one_thread_strictly_increase() {
        // RFC 9562 §6.2: monotonic within one generator (here: one thread).
        let ids: Vec<String> = (0..10_000)
            .map(|_| UuidV7.make_correlation_id().as_str().to_owned())
            .collect();
        for pair in ids.windows(2) {
            assert!(pair[0] < pair[1], "{} then {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn from_header_value_rejects_empty_and_invisible() {
        assert!(CorrelationId::from_header_value(HeaderValue::from_static("")).is_err());
        assert!(CorrelationId::from_header_value(HeaderValue::from_static("a b")).is_err());
        assert!(CorrelationId::from_header_value(HeaderValue::from_static("a\tb")).is_err());
        assert!("ok-1".parse::<CorrelationId>().is_ok());
        assert!("é".parse::<CorrelationId>().is_err());
    }

    #[test]
    fn current_is_scoped_and_restored() {
        assert!(CorrelationId::current().is_none());
        let mut outer = Some("outer".parse::<CorrelationId>().unwrap());
        let mut inner = Some("inner".parse::<CorrelationId>().unwrap());
        enter(&mut outer, || {
            assert_eq!(CorrelationId::current().unwrap().as_str(), "outer");
            enter(&mut inner, || {
                assert_eq!(CorrelationId::current().unwrap().as_str(), "inner")
            });
            assert_eq!(CorrelationId::current().unwrap().as_str(), "outer");
        });
        assert!(CorrelationId::current().is_none());
        // Both IDs are back in their slots, ready for the next poll.
        assert_eq!(outer.unwrap().as_str(), "outer");
        assert_eq!(inner.unwrap().as_str(), "inner");
    }

    #[test]
    fn current_is_restored_after_a_panic() {
        let mut id = Some("p".parse::<CorrelationId>().unwrap());
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            enter(&mut id, || panic!("inner panicked"))
        }));
        assert!(caught.is_err());
        assert!(CorrelationId::current().is_none());
        assert_eq!(id.unwrap().as_str(), "p");
    }
}
