//! The registered claims the layer checks (RFC 7519 §4.1, RFC 9068 §2.2.3
//! for `scope`), read from the payload by a hand-written `Deserialize`: one
//! pass over the top-level object that reads `exp`, `nbf`, `iat`, `iss`,
//! `sub`, `jti`, `aud`, `scope` and `scp` with their type checks and skips
//! every other member. The caller's claims type is read by a second, plain
//! `serde_json` pass.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::JwtError;

/// The registered claims the layer needs, borrowed from the payload.
#[derive(Debug, Default)]
pub(crate) struct Registered<'a> {
    pub(crate) exp: Option<i64>,
    pub(crate) nbf: Option<i64>,
    pub(crate) iat: Option<i64>,
    pub(crate) iss: Option<Cow<'a, str>>,
    pub(crate) sub: Option<Cow<'a, str>>,
    pub(crate) aud: Option<Vec<Cow<'a, str>>>,
    pub(crate) jti: Option<Cow<'a, str>>,
    pub(crate) scope: Option<Cow<'a, str>>,
    pub(crate) scp: Option<Vec<Cow<'a, str>>>,
    /// Bit i set: `required[i]` is present (for non-registered names).
    pub(crate) others_present: u64,
}

impl<'p> Registered<'p> {
    /// Reads the registered claims of `payload` (a JSON object), noting
    /// which of the `required` names (at most 64) are present.
    ///
    /// # Errors
    ///
    /// [`JwtError::InvalidClaim`] naming a registered claim of the wrong
    /// type, repeated, or cut short; [`JwtError::Malformed`] when the
    /// payload is not one JSON object.
    pub(crate) fn read(payload: &'p str, required: &[Box<str>]) -> Result<Self, JwtError> {
        let bad = Cell::new(None);
        // From a `str`: the caller checked UTF-8 once (RFC 7519 §7.2), so
        // serde_json does not check each string again.
        let mut de = serde_json::Deserializer::from_str(payload);
        let read = ClaimsSeed {
            required,
            bad: &bad,
        }
        .deserialize(&mut de)
        .and_then(|registered| de.end().map(|()| registered));
        read.map_err(|_| match bad.get() {
            Some(claim) => JwtError::InvalidClaim(claim),
            None => JwtError::Malformed("claims are not a JSON object"),
        })
    }

    /// Whether the claim `name`, `required[index]`, is present.
    pub(crate) fn has(&self, name: &str, index: usize) -> bool {
        match name {
            "exp" => self.exp.is_some(),
            "nbf" => self.nbf.is_some(),
            "iat" => self.iat.is_some(),
            "iss" => self.iss.is_some(),
            "sub" => self.sub.is_some(),
            "aud" => self.aud.is_some(),
            "jti" => self.jti.is_some(),
            "scope" => self.scope.is_some(),
            "scp" => self.scp.is_some(),
            _ => index < 64 && self.others_present & (1 << index) != 0,
        }
    }

    /// The scopes, from `scope` (space separated) or else `scp` (array or
    /// space-separated string), joined by single spaces: one allocation
    /// (none when there is no scope).
    pub(crate) fn scopes(&self) -> Arc<str> {
        fn joined(s: &str) -> bool {
            !s.starts_with(' ') && !s.ends_with(' ') && !s.contains("  ")
        }
        match (&self.scope, self.scp.as_deref()) {
            (Some(scope), _) if joined(scope) => return Arc::from(&**scope),
            (None, Some([one])) if joined(one) => return Arc::from(&**one),
            (None, None | Some([])) => return Arc::from(""),
            _ => {}
        }
        let mut out = String::new();
        let mut push = |scope: &str| {
            for s in scope.split(' ').filter(|s| !s.is_empty()) {
                if !out.is_empty() {
                    out.push(' ');
                }
                out.push_str(s);
            }
        };
        if let Some(scope) = &self.scope {
            push(scope);
        } else if let Some(list) = &self.scp {
            list.iter().for_each(|s| push(s));
        }
        Arc::from(out)
    }
}

/// Reads the top-level object into [`Registered`]. While a registered
/// claim's value is read, `bad` names it, so that a failure there (wrong
/// type, repeated, truncated JSON) is reported against that claim.
struct ClaimsSeed<'r> {
    required: &'r [Box<str>],
    bad: &'r Cell<Option<&'static str>>,
}

impl<'de> DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Registered<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ClaimsSeed<'_> {
    type Value = Registered<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        /// Reads the value of claim `$name` into `$slot`, refusing a repeat.
        macro_rules! claim {
            ($slot:expr, $name:literal, $read:expr) => {{
                self.bad.set(Some($name));
                if $slot.is_some() {
                    return Err(de::Error::custom(concat!("duplicate claim ", $name)));
                }
                $slot = Some($read);
                self.bad.set(None);
            }};
        }
        let mut out = Registered::default();
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            match &*key {
                "exp" => claim!(out.exp, "exp", map.next_value::<NumericDate>()?.0),
                "nbf" => claim!(out.nbf, "nbf", map.next_value::<NumericDate>()?.0),
                "iat" => claim!(out.iat, "iat", map.next_value::<NumericDate>()?.0),
                "iss" => claim!(out.iss, "iss", map.next_value::<Str<'de>>()?.0),
                "sub" => claim!(out.sub, "sub", map.next_value::<Str<'de>>()?.0),
                "jti" => claim!(out.jti, "jti", map.next_value::<Str<'de>>()?.0),
                "scope" => claim!(out.scope, "scope", map.next_value::<Str<'de>>()?.0),
                "aud" => claim!(out.aud, "aud", map.next_value::<OneOrMany<'de>>()?.0),
                "scp" => claim!(out.scp, "scp", map.next_value::<OneOrMany<'de>>()?.0),
                other => {
                    if let Some(i) = self.required.iter().position(|r| **r == *other)
                        && i < 64
                    {
                        out.others_present |= 1 << i;
                    }
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number, integer or not, floored to
/// whole seconds. Anything else (a string, null, a bool) is an error, never
/// ignored (RFC 8725 §3.10).
struct NumericDate(i64);

impl<'de> de::Deserialize<'de> for NumericDate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                Ok(NumericDate(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                // `as` saturates; JSON has no NaN or infinity.
                Ok(NumericDate(v.floor() as i64))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A JSON string, borrowed when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// A string or an array of strings (`aud`, RFC 7519 §4.1.3; `scp`), as a
/// list.
struct OneOrMany<'a>(Vec<Cow<'a, str>>);

impl<'de> de::Deserialize<'de> for OneOrMany<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![Cow::Borrowed(v)]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany(vec![Cow::Owned(v.to_owned())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(Str(s)) = seq.next_element::<Str<'de>>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"{"iss":"https://idp.example.com","sub":"us\u0065r-42",
        "aud":["a","b"],"exp":1700000000.5,"nbf":-5,"iat":1600000000,"jti":"j",
        "scope":"read write","scp":"x","tenant":{"id":7,"aud":"nested"},"n":[1,2]}"#;

    #[test]
    fn registered_claims_are_read_and_nested_ones_ignored() {
        let out = Registered::read(FULL, &[]).expect("reads");
        assert_eq!(out.exp, Some(1_700_000_000));
        assert_eq!(out.nbf, Some(-5));
        assert_eq!(out.iat, Some(1_600_000_000));
        assert_eq!(out.iss.as_deref(), Some("https://idp.example.com"));
        assert_eq!(out.sub.as_deref(), Some("user-42"));
        assert_eq!(
            out.aud.as_deref(),
            Some(&[Cow::Borrowed("a"), Cow::Borrowed("b")][..])
        );
        assert_eq!(out.scope.as_deref(), Some("read write"));
        assert_eq!(out.scp.as_deref(), Some(&[Cow::Borrowed("x")][..]));
        assert_eq!(out.jti.as_deref(), Some("j"));
    }

    #[test]
    fn bad_registered_claims_are_named() {
        for (payload, claim) in [
            (r#"{"exp":"soon"}"#, "exp"),
            (r#"{"exp":1,"exp":2}"#, "exp"),
            (r#"{"iss":7}"#, "iss"),
            (r#"{"aud":[1]}"#, "aud"),
            (r#"{"nbf":null}"#, "nbf"),
            (r#"{"e\u0078p":"escaped key"}"#, "exp"),
        ] {
            let err = Registered::read(payload, &[]).unwrap_err();
            assert_eq!(err, JwtError::InvalidClaim(claim), "{payload}");
        }
        for payload in ["[1]", "\"x\"", "{} {}", "{\"a\":1", "{\"a\":1,\"a\":2"] {
            let err = Registered::read(payload, &[]).unwrap_err();
            assert_eq!(
                err,
                JwtError::Malformed("claims are not a JSON object"),
                "{payload}"
            );
        }
    }

    #[test]
    fn required_non_registered_claims_are_recorded() {
        let required: Vec<Box<str>> = vec!["tenant".into(), "exp".into(), "role".into()];
        let out = Registered::read(r#"{"tenant":1,"exp":2}"#, &required).expect("reads");
        assert_eq!(out.others_present, 0b001);
        assert!(out.has("tenant", 0) && out.has("exp", 1) && !out.has("role", 2));
    }
}
