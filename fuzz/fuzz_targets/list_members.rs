//! The crate's one list scanner (RFC 9110 §5.6.1 lists, §5.6.4
//! quoted-strings), through its `cfg(fuzzing)` entry point: never a panic;
//! every member is non-empty, has no OWS at either end and is a slice of
//! one line; without a quote, members are exactly the trimmed non-empty
//! pieces between commas, both ways; with quotes, the two walks agree on
//! lines whose quotes are balanced, and may differ on a quote left open
//! (each walk is anchored at the end it starts from).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_edge::__fuzz::list_members;

fn trim(bytes: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes.iter().position(|b| !is_ows(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ows(b)).map_or(start, |i| i + 1);
    &bytes[start..end]
}

fuzz_target!(|data: &[u8]| {
    let lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    for quoted in [true, false] {
        let (forward, mut reverse) = list_members(&lines, quoted);
        reverse.reverse();
        if !quoted || !data.contains(&b'"') {
            assert_eq!(forward, reverse, "quoted: {quoted}");
        }
        for member in forward.iter().chain(&reverse) {
            assert!(!member.is_empty());
            assert_eq!(trim(member), *member);
            assert!(!member.contains(&b'\n'));
        }
        if !quoted || !data.contains(&b'"') {
            let split: Vec<&[u8]> = lines
                .iter()
                .flat_map(|l| l.split(|&b| b == b','))
                .map(trim)
                .filter(|m| !m.is_empty())
                .collect();
            assert_eq!(forward, split, "quoted: {quoted}");
        }
    }
});
