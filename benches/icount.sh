#!/usr/bin/env bash
# Instructions per request of criterion bench cases, counted by
# `valgrind --tool=callgrind`: deterministic for a given binary, so ratios
# hold on a loaded machine where wall-clock figures do not.
#
#   benches/icount.sh [--peers] <bench> <case>...
#   ICOUNT_FEATURES=aws-lc-rs benches/icount.sh --peers jwt_peers ...
#   benches/icount.sh --peers correlation_peers \
#       correlation_vs_tower_http/bare/generated \
#       correlation_vs_tower_http/tower_edge/generated
#
# <case> is a criterion ID (group/function/parameter). Each case runs
# ITERS requests (default 20000) through `icount_loop` in
# benches/common/mod.rs, the only code counted, so request building, the
# inner service and body collection are in every figure alike (the `bare`
# case of a group is the baseline). Needs valgrind (Debian: apt-get install
# valgrind).
set -euo pipefail

dir="$(cd "$(dirname "$0")" && pwd)"
manifest="$dir/../Cargo.toml"
features=(--all-features)
if [ "${1:-}" = --peers ]; then
    manifest="$dir/peers/Cargo.toml"
    features=()
    shift
fi
# ICOUNT_FEATURES=aws-lc-rs (say) builds with those features instead.
if [ -n "${ICOUNT_FEATURES:-}" ]; then
    features=(--features "$ICOUNT_FEATURES")
fi
bench="${1:?usage: benches/icount.sh [--peers] <bench> <case>...}"
shift
iters="${ITERS:-20000}"

if ! command -v valgrind >/dev/null; then
    echo "valgrind is missing: install it (Debian: apt-get install valgrind)" >&2
    exit 2
fi

binary="$(cargo bench --manifest-path "$manifest" "${features[@]}" --bench "$bench" --no-run 2>&1 |
    sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)"
if [ ! -x "$binary" ]; then
    echo "could not build the bench $bench" >&2
    exit 2
fi

# glibc's malloc takes different paths (consolidating free chunks or not)
# depending on what the process allocated before the counted loop, which
# moved whole-request counts by up to 2.5 % with criterion's flags alone. An
# unbounded thread cache makes every free/malloc of the request cycle take
# the same path whatever came before (the count then repeats exactly); it
# applies to both sides of every comparison alike.
export GLIBC_TUNABLES="${GLIBC_TUNABLES:-glibc.malloc.tcache_count=65535}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
printf '%-64s %14s\n' case instructions/request
for case in "$@"; do
    out="$work/callgrind.out"
    BENCH_ICOUNT_ITERS="$iters" valgrind --tool=callgrind --callgrind-out-file="$out" \
        --collect-atstart=no --toggle-collect='*icount_loop*' \
        "$binary" --bench "^${case}\$" --warm-up-time 0.01 --measurement-time 0.01 \
        --sample-size 10 --nresamples 10 --noplot --save-baseline icount >"$work/log" 2>&1 || {
        cat "$work/log" >&2
        exit 1
    }
    total="$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$out")"
    if [ -z "$total" ] || [ "$total" = 0 ]; then
        echo "no instructions counted for $case (does the ID match a case?)" >&2
        exit 1
    fi
    printf '%-64s %14d\n' "$case" "$((total / iters))"
done
