//! Lowercase hex of hashes and tokens, written on the stack: the ETag of
//! every response, the Redis keys and fencing tokens of every request.

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes the hex of `bytes` into `out`, two digits a byte (as far as
/// `out` reaches).
pub(crate) fn encode_into(bytes: &[u8], out: &mut [u8]) {
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 15)];
    }
}

/// The 16 digits of `value` (as `format!("{value:016x}")`).
#[cfg_attr(not(feature = "cache-headers"), allow(dead_code))]
pub(crate) fn u64_digits(value: u64) -> [u8; 16] {
    let mut out = [0; 16];
    encode_into(&value.to_be_bytes(), &mut out);
    out
}

/// Digits written by this module, as text.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) fn as_str(digits: &[u8]) -> &str {
    std::str::from_utf8(digits).unwrap_or_default()
}

/// The hex of `bytes`, as an owned string.
#[cfg_attr(not(feature = "idempotency"), allow(dead_code))]
pub(crate) fn string(bytes: &[u8]) -> String {
    let mut out = vec![0; bytes.len() * 2];
    encode_into(bytes, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_those_of_format() {
        for value in [0, 1, 0xab, 0x0123_4567_89ab_cdef, u64::MAX] {
            let expected = format!("{value:016x}");
            assert_eq!(&u64_digits(value)[..], expected.as_bytes());
            assert_eq!(as_str(&u64_digits(value)), expected);
        }
        let wide = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        assert_eq!(string(&wide.to_be_bytes()), format!("{wide:032x}"));
        let mut bytes = [0u8; 32];
        bytes
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i * 37) as u8);
        let expected: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(string(&bytes), expected);
    }
}
