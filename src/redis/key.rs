//! Key prefixes and Redis Cluster hash tags for the stores on the backend.
//!
//! Redis Cluster hashes only the part of a key between the first `{` and
//! the next `}` (Redis Cluster specification, "Hash tags"): keys of one
//! client share a tag, so one script can touch all of them.

use crate::ConfigError;

const MAX_PREFIX_LEN: usize = 64;

/// Checks a store's key prefix: 1 to 64 printable ASCII characters without
/// spaces or braces (a brace would move the hash tag into the prefix).
pub(crate) fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    if prefix.is_empty() || prefix.len() > MAX_PREFIX_LEN {
        return Err(ConfigError::new(
            "key_prefix",
            format!("must be 1 to {MAX_PREFIX_LEN} characters"),
        ));
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}')
    {
        return Err(ConfigError::new(
            "key_prefix",
            "must be printable ASCII without spaces, `{` or `}` (braces would break the Cluster hash tag)",
        ));
    }
    Ok(())
}

/// `<prefix>:{<tag>}:<suffix>`: the hash tag is the first `{...}`, so it
/// is `tag` whenever the prefix (validated) and `tag` have no brace.
pub(crate) fn tagged_key(prefix: &str, tag: impl std::fmt::Display, suffix: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(prefix.len() + suffix.len() + 48);
    let _ = write!(out, "{prefix}:{{{tag}}}:{suffix}");
    out
}

/// [`tagged_key`] for a tag that is a string and a suffix in parts
/// (`["e", ":", id]`), in one exact allocation without the formatting
/// machinery: for keys built on every request.
#[cfg(any(feature = "response-cache", feature = "idempotency"))]
pub(crate) fn tagged_key_from_parts(prefix: &str, tag: &str, suffix: &[&str]) -> String {
    let len = prefix.len() + tag.len() + 4 + suffix.iter().map(|part| part.len()).sum::<usize>();
    let mut out = String::with_capacity(len);
    out.push_str(prefix);
    out.push_str(":{");
    out.push_str(tag);
    out.push_str("}:");
    for part in suffix {
        out.push_str(part);
    }
    out
}

#[cfg(all(test, any(feature = "response-cache", feature = "idempotency")))]
mod tests {
    use super::*;

    #[test]
    fn keys_from_parts_are_spelled_as_tagged_keys() {
        assert_eq!(
            tagged_key_from_parts("app", "rc", &["e", ":", "0123abcd"]),
            tagged_key("app", "rc", "e:0123abcd")
        );
        assert_eq!(tagged_key_from_parts("p", "t", &[]), "p:{t}:");
    }
}
