#!/usr/bin/env bash
# Overload by hand, measured: the axum example with a slow origin of finite
# capacity (every handler sleeps ORIGIN_DELAY_MS, at most ORIGIN_CAPACITY at
# once: a database pool), loaded by CLIENTS concurrent clients, first
# without overload protection (built without the `overload` feature), then
# with global shedding at MAX_IN_FLIGHT (default: the origin's capacity).
#
#   bash benches/overload.sh            # 200 ms, capacity 16, 128 clients, 10 s
#   ORIGIN_DELAY_MS=50 CLIENTS=256 bash benches/overload.sh
#
# For each run: wrk (goodput, non-2xx count, latency of all answers) and
# benches/overload_probe.rs (the same load; latency percentiles of the
# admitted requests alone, and of the shed ones). Loopback only, bounded
# runs. Needs wrk (Debian: apt-get install -y wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

delay="${ORIGIN_DELAY_MS:-200}"
capacity="${ORIGIN_CAPACITY:-16}"
clients="${CLIENTS:-128}"
duration="${DURATION_S:-10}"
max_in_flight="${MAX_IN_FLIGHT:-$capacity}"
port="${PORT:-39017}"
url="http://127.0.0.1:${port}/products"

command -v wrk >/dev/null || { echo "wrk is missing (apt-get install -y wrk)" >&2; exit 2; }

work="$(mktemp -d)"
server=""
cleanup() {
    [ -n "$server" ] && kill "$server" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

executable() { sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1; }
echo "building (release): the example without and with the overload feature, the probe"
# Explicit features: `overload` is a default feature, and so is
# `response-cache`, which would answer `/products` from memory and never
# reach the slow origin. Both builds leave the response cache out.
base="jwt-auth,rate-limit,cache-headers,correlation-id,idempotency"
cargo build --release --example axum --no-default-features --features "$base" 2>/dev/null
cp "${CARGO_TARGET_DIR:-target}/release/examples/axum" "$work/axum-without"
cargo build --release --example axum --no-default-features --features "$base,overload" 2>/dev/null
cp "${CARGO_TARGET_DIR:-target}/release/examples/axum" "$work/axum-with"
probe="$(cargo bench --bench overload_probe --no-run 2>&1 | executable)"

run() {
    local label="$1" binary="$2"
    BIND="127.0.0.1:${port}" ORIGIN_DELAY_MS="$delay" ORIGIN_CAPACITY="$capacity" \
        MAX_IN_FLIGHT="$max_in_flight" MAX_IN_FLIGHT_PER_CLIENT="$max_in_flight" \
        RATE_LIMIT="100000/s burst 100000" MAX_CONNECTIONS=4096 \
        "$binary" >"$work/server.log" 2>&1 &
    server=$!
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null && break
        sleep 0.1
    done
    echo
    echo "== ${label}: origin ${delay} ms x ${capacity} at once (at most $((capacity * 1000 / delay)) req/s), ${clients} clients, ${duration} s"
    wrk -t 2 -c "$clients" -d "${duration}s" --latency "$url" |
        grep -E 'Latency|50%|99%|requests in|Requests/sec|Non-2xx' || true
    OVERLOAD_PROBE_URL="$url" CONCURRENCY="$clients" DURATION_S="$duration" "$probe" |
        tee "$work/probe.out"
    # A goodput above the origin's capacity means something else answered
    # (a cache, a route without the delay): the run measures nothing.
    local goodput
    goodput="$(sed -n 's/.*goodput \([0-9.]*\) req\/s.*/\1/p' "$work/probe.out")"
    if [ -n "$goodput" ] && awk -v g="$goodput" -v c="$((capacity * 1000 / delay))" 'BEGIN { exit !(g > 1.5 * c) }'; then
        echo "FATAL: goodput ${goodput} req/s is over the origin's capacity: the requests did not reach the slow origin" >&2
        exit 1
    fi
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=""
}

run "without overload protection" "$work/axum-without"
run "with global shedding, MAX_IN_FLIGHT=${max_in_flight}" "$work/axum-with"
