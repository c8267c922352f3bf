//! Quotas: "N per period", with an optional burst.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How many requests a key may make: `count` per `period`, with bursts of
/// up to `burst` requests (default: `count`).
///
/// Quotas read as they mean: [`Quota::per_second(2)`](Quota::per_second) is
/// two requests per second (one cell every 500 ms, bursts of two), never one
/// request every two seconds.
///
/// In GCRA terms (see the [module docs](super)) the emission interval is
/// `T = period / count` and the tolerance `τ = T · (burst − 1)`.
///
/// Quotas also parse from the strings config files use, and deserialize
/// from them with serde:
///
/// ```
/// use std::time::Duration;
/// use tower_edge::rate_limit::Quota;
///
/// let quota: Quota = "600/min burst 60".parse().unwrap();
/// assert_eq!(quota, Quota::per_minute(600).with_burst(60));
/// assert_eq!(quota.emission_interval(), Duration::from_millis(100));
/// assert_eq!("10/s burst 20".parse::<Quota>().unwrap().burst(), 20);
/// assert_eq!("100/min".parse::<Quota>().unwrap(), Quota::per_minute(100));
/// assert_eq!("5/10s".parse::<Quota>().unwrap(), Quota::new(5, Duration::from_secs(10)));
///
/// let err = "100/fortnight".parse::<Quota>().unwrap_err();
/// assert!(err.to_string().contains("unknown time unit `fortnight`"));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    count: u32,
    period: Duration,
    burst: u32,
    /// `T` in nanoseconds, computed once (a division the hot path would
    /// otherwise make on every check); a function of `count` and `period`,
    /// so equality and hashing are unchanged by it.
    interval_nanos: u64,
}

impl Quota {
    /// `count` requests per `period`, bursts of `count`.
    ///
    /// A zero `count` or `period`, a period that is not a whole number of
    /// seconds (the `w` of the `RateLimit-Policy` header is in seconds) or
    /// longer than a year, or a rate above one request per nanosecond
    /// (`T = period / count` under 1 ns) is refused when the layer is built.
    pub const fn new(count: u32, period: Duration) -> Self {
        let period_nanos = period.as_nanos();
        let period_nanos = if period_nanos > u64::MAX as u128 {
            u64::MAX
        } else {
            period_nanos as u64
        };
        let divisor = if count == 0 { 1 } else { count as u64 };
        Self {
            count,
            period,
            burst: count,
            interval_nanos: period_nanos / divisor,
        }
    }

    /// `count` requests per second.
    pub const fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` requests per minute.
    pub const fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// `count` requests per hour.
    pub const fn per_hour(count: u32) -> Self {
        Self::new(count, Duration::from_secs(3600))
    }

    /// `count` requests per day.
    pub const fn per_day(count: u32) -> Self {
        Self::new(count, Duration::from_secs(86_400))
    }

    /// The same rate with bursts of up to `burst` requests.
    pub const fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Requests per period (`q` of `RateLimit-Policy`).
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// The period (`w` of `RateLimit-Policy`).
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// The largest burst.
    pub const fn burst(&self) -> u32 {
        self.burst
    }

    /// GCRA's emission interval `T = period / count`: one cell every `T`.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.interval_nanos())
    }

    /// GCRA's tolerance `τ = T · (burst − 1)`.
    pub fn tolerance(&self) -> Duration {
        Duration::from_nanos(self.tolerance_nanos())
    }

    pub(crate) fn interval_nanos(&self) -> u64 {
        self.interval_nanos
    }

    pub(crate) fn tolerance_nanos(&self) -> u64 {
        self.interval_nanos()
            .saturating_mul(u64::from(self.burst.saturating_sub(1)))
    }

    /// Checks the quota; `field` names it in the error.
    pub(crate) fn validate(&self, field: &'static str) -> Result<(), crate::ConfigError> {
        let err = |m: &'static str| Err(crate::ConfigError::new(field, m));
        if self.count == 0 {
            return err("the request count must be at least 1");
        }
        if self.burst == 0 {
            return err("the burst must be at least 1");
        }
        if self.period.is_zero() || self.period.subsec_nanos() != 0 {
            return err("the period must be a whole, non-zero number of seconds");
        }
        if self.period.as_secs() > 366 * 86_400 {
            return err("the period must be at most a year");
        }
        if self.interval_nanos == 0 {
            // T = period / count rounds to 0 ns: the store would raise T to
            // 1 ns with a τ computed from 0, a burst of 1.
            return err(
                "the rate is too high: at most one request per nanosecond (period / count)",
            );
        }
        Ok(())
    }
}

impl fmt::Debug for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quota({self})")
    }
}

/// `100/60s`, `10/1s burst 20`: the form [`FromStr`] reads back.
impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.period.as_secs();
        match (secs, self.period.subsec_nanos()) {
            (1, 0) => write!(f, "{}/s", self.count)?,
            (60, 0) => write!(f, "{}/min", self.count)?,
            (3600, 0) => write!(f, "{}/h", self.count)?,
            (86_400, 0) => write!(f, "{}/day", self.count)?,
            (s, 0) => write!(f, "{}/{s}s", self.count)?,
            _ => write!(f, "{}/{}ms", self.count, self.period.as_millis())?,
        }
        if self.burst != self.count {
            write!(f, " burst {}", self.burst)?;
        }
        Ok(())
    }
}

/// A quota string could not be read. The message says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quota `{input}`: {message}")]
pub struct QuotaParseError {
    input: String,
    message: String,
}

impl QuotaParseError {
    fn new(input: &str, message: impl Into<String>) -> Self {
        Self {
            input: input.chars().take(64).collect(),
            message: message.into(),
        }
    }
}

const EXPECTED: &str = "expected `<count>/<period>` with an optional ` burst <n>`, \
                        e.g. `100/min`, `10/s burst 20`, `5/10s`";

impl FromStr for Quota {
    type Err = QuotaParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |m: String| QuotaParseError::new(input, m);
        let trimmed = input.trim();
        let (rate, burst) = match trimmed.to_ascii_lowercase().find("burst") {
            Some(at) => {
                let burst = trimmed[at + "burst".len()..].trim();
                if burst.is_empty() {
                    return Err(err(EXPECTED.into()));
                }
                (&trimmed[..at], Some(burst))
            }
            None => (trimmed, None),
        };
        let (count, period) = rate.split_once('/').ok_or_else(|| err(EXPECTED.into()))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| err(format!("`{count}` is not a request count")))?;
        let period = period.trim();
        if period.contains(|c: char| c.is_ascii_whitespace()) {
            return Err(err(EXPECTED.into()));
        }
        let digits = period
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(period.len());
        let (multiplier, unit) = period.split_at(digits);
        let multiplier: u64 = if multiplier.is_empty() {
            1
        } else {
            multiplier
                .parse()
                .map_err(|_| err(format!("`{multiplier}` is not a number")))?
        };
        let unit_secs = match unit.to_ascii_lowercase().as_str() {
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "" => return Err(err("missing time unit (s, min, h, day)".into())),
            other => {
                return Err(err(format!(
                    "unknown time unit `{other}` (use s, min, h or day)"
                )));
            }
        };
        let mut quota = Quota::new(
            count,
            Duration::from_secs(multiplier.saturating_mul(unit_secs)),
        );
        if let Some(burst) = burst {
            let burst: u32 = burst
                .parse()
                .map_err(|_| err(format!("`{burst}` is not a burst size")))?;
            quota = quota.with_burst(burst);
        }
        quota
            .validate("quota")
            .map_err(|e| err(e.message().to_owned()))?;
        Ok(quota)
    }
}

impl serde::Serialize for Quota {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Quota {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Quota;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quota such as \"100/min\" or \"10/s burst 20\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quota, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Quotas read as "N per period", like `q` per `w` in
    // draft-ietf-httpapi-ratelimit-headers-11 §3.1: `per_second(2)` is two
    // per second, never one per two seconds.
    #[test]
    fn per_second_two_means_two_per_second() {
        let q = Quota::per_second(2);
        assert_eq!(q.emission_interval(), Duration::from_millis(500));
        assert_eq!(q.burst(), 2);
        assert_eq!(q.tolerance(), Duration::from_millis(500));
        assert_eq!(
            Quota::per_minute(600).emission_interval(),
            Duration::from_millis(100)
        );
        assert_eq!(
            Quota::per_hour(3600).emission_interval(),
            Duration::from_secs(1)
        );
        let burst = Quota::per_second(10).with_burst(20);
        assert_eq!(burst.tolerance(), Duration::from_millis(1900));
    }

    #[test]
    fn parses_config_strings() {
        let cases = [
            ("100/min", Quota::per_minute(100)),
            ("10/s burst 20", Quota::per_second(10).with_burst(20)),
            ("600/min burst 60", Quota::per_minute(600).with_burst(60)),
            ("  3 / hour ", Quota::per_hour(3)),
            ("1000/day", Quota::per_day(1000)),
            ("5/10s", Quota::new(5, Duration::from_secs(10))),
            (
                "7/2m BURST 1",
                Quota::new(7, Duration::from_secs(120)).with_burst(1),
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(input.parse::<Quota>().unwrap(), expected, "{input}");
            // Display reads back.
            assert_eq!(expected.to_string().parse::<Quota>().unwrap(), expected);
        }
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let cases = [
            ("", "expected `<count>/<period>`"),
            ("100", "expected `<count>/<period>`"),
            ("abc/min", "`abc` is not a request count"),
            ("100/", "missing time unit"),
            ("100/fortnight", "unknown time unit `fortnight`"),
            ("0/min", "count must be at least 1"),
            ("10/s burst", "expected"),
            ("10/s burst x", "`x` is not a burst size"),
            ("10/s burst 0", "burst must be at least 1"),
            ("10/s bust 3", "expected"),
            ("10/0s", "whole, non-zero number of seconds"),
            ("1500000000/s burst 1000", "rate is too high"),
            ("4294967295/4s", "rate is too high"),
        ];
        for (input, needle) in cases {
            let err = input.parse::<Quota>().unwrap_err().to_string();
            assert!(err.contains(needle), "{input:?}: {err}");
        }
    }

    // T = period / count must be at least 1 ns: below it, T rounded to 0
    // and the store's T of 1 ns with τ = 0 collapsed any burst to 1.
    #[test]
    fn a_rate_above_one_per_nanosecond_is_refused() {
        let err = Quota::per_second(1_500_000_000)
            .with_burst(1000)
            .validate("quota")
            .unwrap_err();
        assert_eq!(err.field(), "quota");
        assert!(err.message().contains("rate is too high"), "{err}");
        // One per nanosecond exactly is fine, and keeps its burst.
        let quota: Quota = "1000000000/s burst 1000".parse().unwrap();
        assert_eq!(quota.emission_interval(), Duration::from_nanos(1));
        assert_eq!(quota.tolerance(), Duration::from_nanos(999));
        assert!("4294967295/5s".parse::<Quota>().is_ok());
    }

    #[test]
    fn serde_reads_and_writes_the_string_form() {
        #[derive(serde::Deserialize, serde::Serialize)]
        struct Config {
            quota: Quota,
        }
        let config: Config = serde_json::from_str(r#"{"quota":"10/s burst 20"}"#).unwrap();
        assert_eq!(config.quota, Quota::per_second(10).with_burst(20));
        assert_eq!(
            serde_json::to_string(&config).unwrap(),
            r#"{"quota":"10/s burst 20"}"#
        );
        let err = serde_json::from_str::<Config>(r#"{"quota":"ten/s"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("`ten` is not a request count"), "{err}");
    }
}
