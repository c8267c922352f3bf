//! The [`HttpDate`] type (RFC 9110 §5.6.7).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;
use http::header::GetAll;

/// 9999-12-31T23:59:59Z + 1 s: the first instant an HTTP-date cannot hold.
const MAX_SECS: u64 = 253_402_300_800;

/// An HTTP-date (RFC 9110 §5.6.7) at one-second granularity: the value of
/// `Last-Modified`, `If-Modified-Since`, `Date`...
///
/// Parsing accepts the three formats a recipient must accept (IMF-fixdate,
/// RFC 850 and asctime); [`Display`](fmt::Display) writes IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`). Sub-second precision is dropped when
/// converting from [`SystemTime`], so comparisons happen at the one-second
/// granularity of the header.
///
/// ```
/// use tower_edge::cache_headers::HttpDate;
///
/// let date: HttpDate = "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap();
/// assert_eq!(date.unix_seconds(), 784111777);
/// assert_eq!(date.to_string(), "Sun, 06 Nov 1994 08:49:37 GMT");
/// let same: HttpDate = "Sunday, 06-Nov-94 08:49:37 GMT".parse().unwrap();
/// assert_eq!(date, same);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HttpDate {
    secs: u64,
}

/// A value is not an HTTP-date, or a time is outside what one can hold
/// (before 1970 or after 9999).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid HTTP-date (RFC 9110 §5.6.7, years 1970 to 9999)")]
pub struct InvalidHttpDate(());

impl HttpDate {
    /// The current time, truncated to the second.
    pub fn now() -> Self {
        Self::try_from(SystemTime::now()).unwrap_or(Self { secs: 0 })
    }

    /// The date `secs` seconds after the Unix epoch.
    ///
    /// # Errors
    ///
    /// `secs` is after the year 9999.
    pub fn from_unix_seconds(secs: u64) -> Result<Self, InvalidHttpDate> {
        if secs < MAX_SECS {
            Ok(Self { secs })
        } else {
            Err(InvalidHttpDate(()))
        }
    }

    /// Seconds since the Unix epoch.
    pub fn unix_seconds(self) -> u64 {
        self.secs
    }

    /// The date as a [`SystemTime`].
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.secs)
    }

    /// The IMF-fixdate header form.
    pub fn to_header_value(self) -> HeaderValue {
        HeaderValue::from_str(&self.to_string()).expect("an HTTP-date is header-safe")
    }

    /// Parses a header value.
    ///
    /// # Errors
    ///
    /// The value is not an HTTP-date.
    pub fn from_header_value(value: &HeaderValue) -> Result<Self, InvalidHttpDate> {
        value
            .to_str()
            .map_err(|_| InvalidHttpDate(()))
            .and_then(str::parse)
    }

    /// The date of a field that must hold exactly one HTTP-date. A field
    /// given on several lines is a list, which these fields do not allow,
    /// and is ignored like an invalid date (RFC 9110 §13.1.3, §13.1.4).
    pub(crate) fn from_single_line(lines: GetAll<'_, HeaderValue>) -> Option<Self> {
        let mut iter = lines.iter();
        let first = iter.next()?;
        if iter.next().is_some() {
            return None;
        }
        Self::from_header_value(first).ok()
    }
}

impl TryFrom<SystemTime> for HttpDate {
    type Error = InvalidHttpDate;

    fn try_from(time: SystemTime) -> Result<Self, Self::Error> {
        let secs = time
            .duration_since(UNIX_EPOCH)
            .map_err(|_| InvalidHttpDate(()))?
            .as_secs();
        Self::from_unix_seconds(secs)
    }
}

impl From<HttpDate> for SystemTime {
    fn from(date: HttpDate) -> Self {
        date.to_system_time()
    }
}

impl From<HttpDate> for HeaderValue {
    fn from(date: HttpDate) -> Self {
        date.to_header_value()
    }
}

impl fmt::Display for HttpDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // In range by construction, so httpdate cannot panic here.
        fmt::Display::fmt(&httpdate::HttpDate::from(self.to_system_time()), f)
    }
}

impl FromStr for HttpDate {
    type Err = InvalidHttpDate;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let time = httpdate::parse_http_date(s).map_err(|_| InvalidHttpDate(()))?;
        Self::try_from(time)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 9110 §5.6.7: recipients accept IMF-fixdate, RFC 850 and asctime.
    #[test]
    fn three_formats_parse_to_the_same_instant() {
        let a: HttpDate = "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap();
        let b: HttpDate = "Sunday, 06-Nov-94 08:49:37 GMT".parse().unwrap();
        let c: HttpDate = "Sun Nov  6 08:49:37 1994".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, c);
    }

    // RFC 9110 §5.6.7: an invalid date is invalid, never a guess.
    #[test]
    fn invalid_dates_are_rejected() {
        for bad in [
            "",
            "yesterday",
            "Sun, 06 Nov 1994 08:49:37",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 25:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",
            "1994-11-06T08:49:37Z",
        ] {
            assert!(bad.parse::<HttpDate>().is_err(), "{bad:?}");
        }
        assert!(HttpDate::from_unix_seconds(MAX_SECS).is_err());
        assert!(HttpDate::try_from(UNIX_EPOCH - Duration::from_secs(1)).is_err());
    }

    // RFC 9110 §13.1.3: one-second granularity.
    #[test]
    fn sub_seconds_are_truncated() {
        let t = UNIX_EPOCH + Duration::from_millis(1_000_999);
        assert_eq!(HttpDate::try_from(t).unwrap().unix_seconds(), 1000);
    }
}
