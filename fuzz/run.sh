#!/usr/bin/env bash
# Runs every fuzz target for the given number of seconds (default 60) and
# prints the executions of each. Needs cargo-fuzz (`cargo install
# cargo-fuzz`); stable rustc is accepted with RUSTC_BOOTSTRAP=1 (cargo-fuzz
# passes nightly-only -Z flags for the sanitizer and coverage).
#
#   fuzz/run.sh [seconds] [target...]
#
# FUZZ_FLAGS adds cargo-fuzz build flags, e.g. FUZZ_FLAGS="-s none -a" for
# no sanitizer (our code forbids unsafe; much faster to build and run) with
# debug assertions and overflow checks on.
set -euo pipefail

seconds="${1:-60}"
shift || true
cd "$(dirname "$0")"

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: install it with 'cargo install cargo-fuzz'" >&2
    exit 1
fi

export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
read -r -a flags <<<"${FUZZ_FLAGS:-}"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list)
fi

cargo fuzz build "${flags[@]}"

status=0
printf '%-22s %12s %8s  %s\n' target executions exec/s result
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    if [ -d "seeds/$target" ]; then
        cp -n "seeds/$target"/* "corpus/$target/" 2>/dev/null || true
    fi
    log="$(mktemp)"
    if cargo fuzz run "${flags[@]}" "$target" "corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -rss_limit_mb=2048 >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see fuzz/artifacts/$target and $log)"
        status=1
    fi
    execs="$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}')"
    rate="$(grep -m1 'stat::average_exec_per_sec' "$log" | awk '{print $2}')"
    printf '%-22s %12s %8s  %s\n' "$target" "${execs:-?}" "${rate:-?}" "$result"
    [ "$result" = ok ] && rm -f "$log"
done
exit "$status"
