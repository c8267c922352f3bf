#!/usr/bin/env bash
# Soak test (not run in CI): the axum example with the full stack under wrk
# for a while, on loopback only, mixing valid-token, invalid-token,
# rate-limited and conditional (If-None-Match) requests. Reports responses
# by status class and the server's RSS over time, and whether RSS stayed
# flat (the last sample within RSS_TOLERANCE_PCT of the first sample after
# the warm-up).
#
#   scripts/soak.sh [minutes]            # default 10
#   SOAK_SECONDS=20 scripts/soak.sh      # a short smoke run
#
# Environment:
#   TOKEN              a valid bearer token (default: parsed from the
#                      example's stdout, the first JWT-looking word)
#   BIND               server address (default 127.0.0.1:3917; loopback only)
#   THREADS, CONNECTIONS  wrk load (default 2 and 32)
#   SAMPLE_SECONDS     RSS sampling period (default 5)
#   WARMUP_SECONDS     ignored for the flatness check (default: a fifth of
#                      the run, at most 60)
#   RSS_TOLERANCE_PCT  allowed growth after warm-up (default 10)
#   FEATURES           cargo features for the example (default "full")
#   RATE_LIMIT         passed to the example: with its default (600/min per
#                      client) nearly every request of the one loopback
#                      client is a 429; `RATE_LIMIT="2000/s burst 200"`
#                      keeps a mix of 2xx, 304, 401 and 429
#
# Exit status: 0 when RSS stayed flat and every response was expected
# (2xx, 304, 401, 429; no 5xx, no other 4xx, no socket error), 1 otherwise,
# 2 on setup errors.
set -euo pipefail

minutes="${1:-10}"
seconds="${SOAK_SECONDS:-$((minutes * 60))}"
bind="${BIND:-127.0.0.1:3917}"
threads="${THREADS:-2}"
connections="${CONNECTIONS:-32}"
sample="${SAMPLE_SECONDS:-5}"
warmup="${WARMUP_SECONDS:-$((seconds / 5 < 60 ? seconds / 5 : 60))}"
tolerance="${RSS_TOLERANCE_PCT:-10}"
features="${FEATURES:-full}"

case "$bind" in
127.* | localhost:* | "[::1]:"*) ;;
*)
    echo "BIND must be a loopback address, got $bind" >&2
    exit 2
    ;;
esac
for tool in wrk curl; do
    if ! command -v "$tool" >/dev/null; then
        echo "$tool is missing: install it (Debian: apt-get install $tool)" >&2
        exit 2
    fi
done

cd "$(dirname "$0")/.."
target_dir="${CARGO_TARGET_DIR:-target}"
work="$(mktemp -d)"
server_pid=""
sampler_pid=""
cleanup() {
    [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
    if [ -n "$server_pid" ]; then
        kill -INT "$server_pid" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

echo "building the axum example (release, features: $features)..."
cargo build --quiet --release --example axum --features "$features"
binary="$target_dir/release/examples/axum"

# Run the binary itself (not `cargo run`) so that $server_pid is the server.
BIND="$bind" RUST_LOG="${RUST_LOG:-warn}" "$binary" >"$work/server.log" 2>&1 &
server_pid=$!

for _ in $(seq 1 120); do
    if curl -fsS "http://$bind/health" >/dev/null 2>&1; then
        break
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "the example exited early:" >&2
        cat "$work/server.log" >&2
        exit 2
    fi
    sleep 0.5
done
curl -fsS "http://$bind/health" >/dev/null || {
    echo "the example does not answer GET /health on $bind" >&2
    exit 2
}

token="${TOKEN:-}"
if [ -z "$token" ]; then
    token="$(grep -oE 'eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+' "$work/server.log" | head -n1 || true)"
fi
if [ -z "$token" ]; then
    echo "warning: no dev token printed by the example and TOKEN is unset;" >&2
    echo "         valid-token requests will be answered 401" >&2
    token="missing"
fi

# The current ETag of /products/1, for the conditional requests.
etag="$(curl -fsS -o /dev/null -D - -H "Authorization: Bearer $token" "http://$bind/products/1" 2>/dev/null |
    awk 'tolower($1) == "etag:" { sub(/\r$/, ""); $1 = ""; sub(/^ /, ""); print; exit }' || true)"
[ -n "$etag" ] || echo "warning: GET /products/1 gave no ETag; conditional requests are plain GETs" >&2
etag_lua="${etag//\\/\\\\}"
etag_lua="${etag_lua//\"/\\\"}"

cat >"$work/mix.lua" <<EOF
-- One request of each kind in turn, per connection.
local token = "$token"
local kinds = {
  { path = "/products",   auth = "Bearer " .. token },         -- valid token
  { path = "/me",         auth = "Bearer " .. token },         -- valid token
  { path = "/me",         auth = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.bad" }, -- invalid token
  { path = "/products/1", auth = "Bearer " .. token, conditional = true }, -- If-None-Match
  { path = "/products",   auth = nil },                        -- anonymous, limited by IP
  { path = "/health",     auth = nil },
}
local etag = "$etag_lua"
local threads = {}
local i = 0
counts = { ["2xx"] = 0, ["304"] = 0, ["401"] = 0, ["429"] = 0, ["4xx"] = 0, ["5xx"] = 0, other = 0 }

function setup(thread)
  table.insert(threads, thread)
end

function request()
  i = i % #kinds + 1
  local kind = kinds[i]
  local headers = {}
  if kind.auth then headers["Authorization"] = kind.auth end
  if kind.conditional and etag ~= "" then headers["If-None-Match"] = etag end
  return wrk.format("GET", kind.path, headers)
end

function response(status, headers, body)
  local class
  if status == 304 or status == 401 or status == 429 then class = tostring(status)
  elseif status >= 200 and status < 300 then class = "2xx"
  elseif status >= 400 and status < 500 then class = "4xx"
  elseif status >= 500 then class = "5xx"
  else class = "other" end
  counts[class] = counts[class] + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
  end
  io.write("responses by status:\n")
  for _, k in ipairs({ "2xx", "304", "401", "429", "4xx", "5xx", "other" }) do
    io.write(string.format("  %-6s %d\n", k, total[k] or 0))
  end
  io.write(string.format("  socket errors: connect %d, read %d, write %d, timeout %d\n",
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.timeout))
  -- Expected: 2xx, 304, 401 (the invalid token), 429 (the anonymous
  -- requests past their quota). Anything else is a finding.
  local unexpected = (total["4xx"] or 0) + (total["5xx"] or 0) + (total["other"] or 0)
    + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.write(string.format("unexpected responses and socket errors: %d\n", unexpected))
end
EOF

rss() { awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || echo 0; }
(
    start=$(date +%s)
    while kill -0 "$server_pid" 2>/dev/null; do
        echo "$(($(date +%s) - start)) $(rss)" >>"$work/rss"
        sleep "$sample"
    done
) &
sampler_pid=$!

echo "soaking http://$bind for ${seconds}s (wrk -t$threads -c$connections), RSS every ${sample}s"
wrk -t"$threads" -c"$connections" -d"${seconds}s" --timeout 5s -s "$work/mix.lua" "http://$bind/" |
    tee "$work/wrk.out"
unexpected="$(sed -n 's/^unexpected responses and socket errors: //p' "$work/wrk.out")"
kill "$sampler_pid" 2>/dev/null || true
wait "$sampler_pid" 2>/dev/null || true
sampler_pid=""
echo "$seconds $(rss)" >>"$work/rss"

echo
echo "RSS samples (seconds, KiB):"
awk '{ printf "  %5ds %8d KiB\n", $1, $2 }' "$work/rss"
baseline="$(awk -v w="$warmup" '$1 >= w { print $2; exit }' "$work/rss")"
last="$(tail -n1 "$work/rss" | awk '{ print $2 }')"
if [ -z "$baseline" ] || [ "$baseline" -eq 0 ]; then
    echo "no RSS sample after the ${warmup}s warm-up: run longer" >&2
    exit 2
fi
growth=$(((last - baseline) * 100 / baseline))
echo "RSS after warm-up (${warmup}s): ${baseline} KiB; last: ${last} KiB; growth: ${growth}%"
status=0
if [ "$growth" -le "$tolerance" ]; then
    echo "RSS stayed flat (within ${tolerance}%)"
else
    echo "RSS grew by more than ${tolerance}%"
    status=1
fi
if [ "${unexpected:-missing}" = 0 ]; then
    echo "only expected statuses (2xx, 304, 401, 429) and no socket errors"
else
    echo "unexpected responses or socket errors: ${unexpected:-wrk printed no summary}"
    status=1
fi
exit "$status"
