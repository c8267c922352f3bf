//! One serde pass over the claims: the caller's type `T` is deserialized
//! from the payload while the registered claims the layer checks are
//! captured on the way.
//!
//! [`Tap`] wraps the payload's top-level JSON object. Every member goes to
//! `T` unchanged, except the registered claims (`exp`, `nbf`, `iat`, `iss`,
//! `sub`, `jti`, `aud`, `scope`, `scp`): their value is read once into
//! [`Registered`] (with the type checks of RFC 7519 and RFC 8725) and then
//! replayed into `T` from that copy by [`Replay`], which serves the same
//! visitor calls as `serde_json` for these shapes (a number, a string, an
//! array of strings).
//!
//! Any error is reported as an error and nothing else: the caller then
//! re-reads the payload the slow way (registered claims alone, then `T`
//! alone) to name the failure exactly as before. So the fast path only ever
//! serves payloads both passes would have accepted.

use std::borrow::Cow;
use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{
    self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use serde::forward_to_deserialize_any;

use super::verify::Registered;

/// What the pass fills in, shared by the wrappers.
pub(crate) struct State<'r, 'de> {
    pub(crate) out: Registered<'de>,
    /// Names of claims that must be present (for the non-registered ones,
    /// [`Registered`] records a bit per name).
    required: &'r [Box<str>],
    /// The registered claim being read, when reading it failed: named in
    /// the error ([`JwtError::InvalidClaim`](super::JwtError::InvalidClaim)).
    pub(crate) bad: &'r Cell<Option<&'static str>>,
    /// Whether the top-level object was visited (so `out` saw every member).
    visited: bool,
}

impl<'r, 'de> State<'r, 'de> {
    pub(crate) fn new(required: &'r [Box<str>], bad: &'r Cell<Option<&'static str>>) -> Self {
        Self {
            out: Registered::default(),
            required,
            bad,
            visited: false,
        }
    }
}

/// Deserializes `T` from `payload` (one JSON object) and captures the
/// registered claims. `Err` on any failure (see the module docs).
pub(crate) fn deserialize<'r, 'de, T: de::Deserialize<'de>>(
    payload: &'de [u8],
    state: &mut State<'r, 'de>,
) -> Result<T, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(payload);
    let value = T::deserialize(Top {
        de: &mut de,
        state: &mut *state,
    })?;
    de.end()?;
    if !state.visited {
        return Err(de::Error::custom("the claims are not a JSON object"));
    }
    Ok(value)
}

/// The payload's deserializer, wrapped so that its top-level map is tapped.
struct Top<'s, 'r, 'de, D> {
    de: D,
    state: &'s mut State<'r, 'de>,
}

impl<'s, 'r, 'de, D: Deserializer<'de>> Deserializer<'de> for Top<'s, 'r, 'de, D> {
    type Error = D::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_any(TopVisitor {
            visitor,
            state: self.state,
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
        self.de.deserialize_map(TopVisitor {
            visitor,
            state: self.state,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_struct(
            name,
            fields,
            TopVisitor {
                visitor,
                state: self.state,
            },
        )
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.de.deserialize_newtype_struct(
            name,
            TopVisitor {
                visitor,
                state: self.state,
            },
        )
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct seq tuple tuple_struct enum
        identifier ignored_any
    }
}

/// The caller's visitor; a map it visits is tapped. Any other shape is an
/// error (claims are a JSON object).
struct TopVisitor<'s, 'r, 'de, V> {
    visitor: V,
    state: &'s mut State<'r, 'de>,
}

impl<'s, 'r, 'de, V: Visitor<'de>> Visitor<'de> for TopVisitor<'s, 'r, 'de, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        if self.state.visited {
            return Err(de::Error::custom("nested claims"));
        }
        self.state.visited = true;
        self.visitor.visit_map(Tap {
            map,
            state: self.state,
            field: Field::Other,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        self.visitor.visit_newtype_struct(Top {
            de,
            state: self.state,
        })
    }
}

#[derive(Clone, Copy)]
enum Field {
    Other,
    Exp,
    Nbf,
    Iat,
    Iss,
    Sub,
    Jti,
    Aud,
    Scope,
    Scp,
}

/// The top-level object: members pass through, registered claims are
/// captured and replayed.
struct Tap<'s, 'r, 'de, A> {
    map: A,
    state: &'s mut State<'r, 'de>,
    /// The registered claim whose key was just read.
    field: Field,
}

impl<'de, A: MapAccess<'de>> Tap<'_, '_, 'de, A> {
    /// Reads the value of registered claim `name` into `slot` (refusing a
    /// repeated claim), naming it in `bad` while it is read.
    fn capture<C: de::Deserialize<'de>>(
        &mut self,
        name: &'static str,
        is_set: bool,
    ) -> Result<C, A::Error> {
        self.state.bad.set(Some(name));
        if is_set {
            return Err(de::Error::custom(format_args!("duplicate claim {name}")));
        }
        let value = self.map.next_value::<C>()?;
        self.state.bad.set(None);
        Ok(value)
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Tap<'_, '_, 'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(Str(key)) = self.map.next_key::<Str<'de>>()? else {
            return Ok(None);
        };
        self.field = match &*key {
            "exp" => Field::Exp,
            "nbf" => Field::Nbf,
            "iat" => Field::Iat,
            "iss" => Field::Iss,
            "sub" => Field::Sub,
            "jti" => Field::Jti,
            "aud" => Field::Aud,
            "scope" => Field::Scope,
            "scp" => Field::Scp,
            other => {
                let state = &mut *self.state;
                if let Some(i) = state.required.iter().position(|r| **r == *other)
                    && i < 64
                {
                    state.out.others_present |= 1 << i;
                }
                Field::Other
            }
        };
        seed.deserialize(Replay::<A::Error>::str(&key)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        macro_rules! number {
            ($field:ident, $name:literal) => {{
                let n: Num = self.capture($name, self.state.out.$field.is_some())?;
                self.state.out.$field = Some(n.to_i64());
                seed.deserialize(Replay::new(Value::Num(n)))
            }};
        }
        macro_rules! string {
            ($field:ident, $name:literal) => {{
                let Str(s) = self.capture($name, self.state.out.$field.is_some())?;
                let value = seed.deserialize(Replay::str(&s))?;
                self.state.out.$field = Some(s);
                Ok(value)
            }};
        }
        macro_rules! strings {
            ($field:ident, $name:literal) => {{
                let shape: OneOrMany<'de> = self.capture($name, self.state.out.$field.is_some())?;
                let (value, list) = match shape {
                    OneOrMany::One(s) => (seed.deserialize(Replay::str(&s))?, vec![s]),
                    OneOrMany::Many(list) => {
                        (seed.deserialize(Replay::new(Value::Seq(&list)))?, list)
                    }
                };
                self.state.out.$field = Some(list);
                Ok(value)
            }};
        }
        match std::mem::replace(&mut self.field, Field::Other) {
            Field::Other => self.map.next_value_seed(seed),
            Field::Exp => number!(exp, "exp"),
            Field::Nbf => number!(nbf, "nbf"),
            Field::Iat => number!(iat, "iat"),
            Field::Iss => string!(iss, "iss"),
            Field::Sub => string!(sub, "sub"),
            Field::Jti => string!(jti, "jti"),
            Field::Scope => string!(scope, "scope"),
            Field::Aud => strings!(aud, "aud"),
            Field::Scp => strings!(scp, "scp"),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// A NumericDate (RFC 7519 §2): a JSON number, integer or not, as JSON gave
/// it. Anything else (a string, null, a bool) is an error, never ignored.
#[derive(Clone, Copy)]
enum Num {
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Num {
    fn to_i64(self) -> i64 {
        match self {
            Self::U64(v) => i64::try_from(v).unwrap_or(i64::MAX),
            Self::I64(v) => v,
            // `as` saturates; JSON has no NaN or infinity.
            Self::F64(v) => v.floor() as i64,
        }
    }
}

impl<'de> de::Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a NumericDate")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num::U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num::I64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(Num::F64(v))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A JSON string, borrowed when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(StrVisitor)
    }
}

struct StrVisitor;

impl<'de> Visitor<'de> for StrVisitor {
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

/// A string or an array of strings (`aud`, `scp`), keeping which it was.
enum OneOrMany<'a> {
    One(Cow<'a, str>),
    Many(Vec<Cow<'a, str>>),
}

impl<'de> de::Deserialize<'de> for OneOrMany<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(OneOrMany::One(Cow::Owned(v.to_owned())))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(16));
                while let Some(Str(s)) = seq.next_element::<Str<'de>>()? {
                    out.push(s);
                }
                Ok(OneOrMany::Many(out))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// A captured value, replayed into the caller's type.
#[derive(Clone, Copy)]
enum Value<'a, 'de> {
    Num(Num),
    Str(&'a Cow<'de, str>),
    Seq(&'a [Cow<'de, str>]),
}

/// Serves a captured value as `serde_json` serves it: numbers, strings
/// (borrowed when JSON lent them), arrays; `Some` for an option; the value
/// itself for a newtype struct; a unit variant for an enum from a string.
struct Replay<'a, 'de, E> {
    value: Value<'a, 'de>,
    error: PhantomData<E>,
}

impl<'a, 'de, E> Replay<'a, 'de, E> {
    fn new(value: Value<'a, 'de>) -> Self {
        Self {
            value,
            error: PhantomData,
        }
    }

    fn str(s: &'a Cow<'de, str>) -> Self {
        Self::new(Value::Str(s))
    }
}

impl<'de, E: de::Error> Deserializer<'de> for Replay<'_, 'de, E> {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        match self.value {
            Value::Num(Num::U64(v)) => visitor.visit_u64(v),
            Value::Num(Num::I64(v)) => visitor.visit_i64(v),
            Value::Num(Num::F64(v)) => visitor.visit_f64(v),
            Value::Str(Cow::Borrowed(s)) => visitor.visit_borrowed_str(s),
            Value::Str(Cow::Owned(s)) => visitor.visit_str(s),
            Value::Seq(items) => {
                let mut seq = ReplaySeq::<E> {
                    items: items.iter(),
                    error: PhantomData,
                };
                let value = visitor.visit_seq(&mut seq)?;
                match seq.items.len() {
                    0 => Ok(value),
                    left => Err(de::Error::invalid_length(
                        items.len() - left,
                        &"fewer elements in the array",
                    )),
                }
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, E> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, E> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, E> {
        match self.value {
            Value::Str(s) => {
                let variant: de::value::StrDeserializer<'_, E> = s.as_ref().into_deserializer();
                variant.deserialize_enum(name, variants, visitor)
            }
            _ => self.deserialize_any(visitor),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct ReplaySeq<'a, 'de, E> {
    items: std::slice::Iter<'a, Cow<'de, str>>,
    error: PhantomData<E>,
}

impl<'de, E: de::Error> SeqAccess<'de> for ReplaySeq<'_, 'de, E> {
    type Error = E;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, E> {
        match self.items.next() {
            Some(item) => seed.deserialize(Replay::<E>::str(item)).map(Some),
            None => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Deserialize;
    use serde::de::DeserializeOwned;

    use super::*;
    use crate::jwt_auth::StandardClaims;

    /// The one pass, with no required claims; the `bad` claim on failure.
    fn one_pass<T: DeserializeOwned>(
        payload: &str,
    ) -> (Result<T, serde_json::Error>, Option<&'static str>) {
        let bad = Cell::new(None);
        let mut state = State::new(&[], &bad);
        let result = deserialize::<T>(payload.as_bytes(), &mut state);
        (result, bad.get())
    }

    /// The one pass gives what `serde_json` alone gives, whenever it
    /// succeeds; it may only fail where the caller falls back.
    fn same_as_serde_json<T>(payload: &str) -> T
    where
        T: DeserializeOwned + PartialEq + fmt::Debug,
    {
        let plain: T = serde_json::from_str(payload).expect("serde_json reads it");
        let (tapped, _) = one_pass::<T>(payload);
        let tapped = tapped.expect("the one pass reads it");
        assert_eq!(tapped, plain);
        tapped
    }

    const FULL: &str = r#"{"iss":"https://idp.example.com","sub":"us\u0065r-42",
        "aud":["a","b"],"exp":1700000000.5,"nbf":-5,"iat":1600000000,"jti":"j",
        "scope":"read write","scp":"x","tenant":{"id":7,"aud":"nested"},"n":[1,2]}"#;

    #[test]
    fn standard_claims_match_serde_json_and_registered_claims_are_captured() {
        let claims: StandardClaims = same_as_serde_json(FULL);
        assert_eq!(claims.sub.as_deref(), Some("user-42"));
        assert_eq!(claims.exp, Some(1_700_000_000));
        assert_eq!(claims.extra.len(), 2);

        let bad = Cell::new(None);
        let mut state = State::new(&[], &bad);
        deserialize::<IgnoredAnyProbe>(FULL.as_bytes(), &mut state).expect("reads");
        let out = &state.out;
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

    type IgnoredAnyProbe = de::IgnoredAny;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Exp(u64);

    #[derive(Debug, PartialEq, Deserialize)]
    enum Scope {
        #[serde(rename = "read")]
        Read,
        #[serde(rename = "write")]
        Write,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Mine {
        sub: Option<String>,
        exp: Exp,
        iat: Option<f64>,
        aud: Vec<String>,
        scope: Scope,
        #[serde(default)]
        missing: Option<String>,
        tenant: HashMap<String, serde_json::Value>,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(untagged)]
    enum Untagged {
        Claims { sub: String, exp: i64 },
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Wrapper(StandardClaims);

    // Options, newtypes, enums from strings, nested maps (not tapped),
    // untagged enums (buffered by serde), a newtype at the top, and a bare
    // `Value`: what users' claims types do.
    #[test]
    fn user_types_match_serde_json() {
        let payload = r#"{"sub":"u","exp":17,"iat":3,"aud":["one"],"scope":"read",
            "tenant":{"sub":"not a claim","exp":"nor this"}}"#;
        let mine: Mine = same_as_serde_json(payload);
        assert_eq!(mine.aud, ["one"]);
        assert_eq!(mine.scope, Scope::Read);
        same_as_serde_json::<Untagged>(r#"{"sub":"u","exp":5,"x":null}"#);
        same_as_serde_json::<Wrapper>(FULL);
        same_as_serde_json::<serde_json::Value>(FULL);
        same_as_serde_json::<HashMap<String, serde_json::Value>>(FULL);
        same_as_serde_json::<StandardClaims>("{}");
    }

    // Where the claims type refuses the value, the one pass fails too (the
    // caller then reports `ClaimsType` from `serde_json`'s own error).
    #[test]
    fn type_errors_are_errors() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct OneAud {
            aud: String,
        }
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct SmallExp {
            exp: u8,
        }
        let (result, bad) = one_pass::<OneAud>(r#"{"aud":["a","b"]}"#);
        assert!(result.is_err());
        assert_eq!(bad, None);
        assert!(one_pass::<SmallExp>(r#"{"exp":1700000000}"#).0.is_err());
        assert!(one_pass::<Scope>(r#"{"scope":"read"}"#).0.is_err());
    }

    // Registered claims keep their checks, with the claim named (the
    // caller's slow path reads them alone, as `IgnoredAny`, to name it).
    #[test]
    fn bad_registered_claims_are_named() {
        for (payload, claim) in [
            (r#"{"exp":"soon"}"#, "exp"),
            (r#"{"exp":1,"exp":2}"#, "exp"),
            (r#"{"iss":7}"#, "iss"),
            (r#"{"aud":[1]}"#, "aud"),
            (r#"{"nbf":null}"#, "nbf"),
        ] {
            assert!(one_pass::<StandardClaims>(payload).0.is_err(), "{payload}");
            let (result, bad) = one_pass::<de::IgnoredAny>(payload);
            assert!(result.is_err(), "{payload}");
            assert_eq!(bad, Some(claim), "{payload}");
        }
        for payload in ["[1]", "\"x\"", "{} {}", "{\"a\":1"] {
            let (result, bad) = one_pass::<de::IgnoredAny>(payload);
            assert!(result.is_err(), "{payload}");
            assert_eq!(bad, None, "{payload}");
        }
    }

    #[test]
    fn required_non_registered_claims_are_recorded() {
        let required: Vec<Box<str>> = vec!["tenant".into(), "exp".into(), "role".into()];
        let bad = Cell::new(None);
        let mut state = State::new(&required, &bad);
        deserialize::<de::IgnoredAny>(br#"{"tenant":1,"exp":2}"#, &mut state).expect("reads");
        assert_eq!(state.out.others_present, 0b001);
    }
}
