#!/usr/bin/env bash
# The Redis rate-limit store against its ceiling: `redis-benchmark` running
# the very same Lua script (EVALSHA with the arguments our store sends) on
# the same Redis, in one go, then the ratios.
#
#   bash benches/redis_store.sh               # 1 round
#   ROUNDS=2 MEASURE_SECS=3 bash benches/redis_store.sh
#
# Ours: benches/redis_store.rs at 1, 16 and 64 checks in flight (one store,
# one multiplexed connection), then the deny-cache flood.
# Ceiling: redis-benchmark -c 1/16/64 unpipelined, and -c 64 -P 16.
# Needs redis-server on REDIS_HOST:REDIS_PORT (default 127.0.0.1:6379) and
# redis-cli / redis-benchmark on the PATH (apt-get install redis-tools).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
HOST="${REDIS_HOST:-127.0.0.1}"
PORT="${REDIS_PORT:-6379}"
ROUNDS="${ROUNDS:-1}"
MEASURE_SECS="${MEASURE_SECS:-3}"
export MEASURE_SECS
export REDIS_URL="redis://${HOST}:${PORT}"
# redis-benchmark request counts (about MEASURE_SECS each on a small machine).
N_PLAIN="${N_PLAIN:-100000}"
N_PIPELINED="${N_PIPELINED:-400000}"

for tool in redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "FATAL: $tool is needed (apt-get install -y redis-tools)" >&2
    exit 1
  }
done
redis-cli -h "$HOST" -p "$PORT" ping >/dev/null || {
  echo "FATAL: no Redis on $HOST:$PORT (run redis-server; apt-get install -y redis-server)" >&2
  exit 1
}

echo "building the bench (release)..." >&2
(cd "$root" && cargo bench --quiet --features redis --bench redis_store --no-run) >&2
bench() { (cd "$root" && cargo bench --quiet --features redis --bench redis_store -- "$@"); }

# -x: the file's exact bytes (with its final newline), so the sha is the one
# our store sends (redis::Script hashes the include_str! of the same file).
sha="$(redis-cli -h "$HOST" -p "$PORT" -x SCRIPT LOAD <"$root/src/rate_limit/redis/gcra.lua")"
# numkeys key T tau cost burst: exactly what our store sends for one check.
read -r -a args <<<"$(bench evalsha-args)"
key="${args[1]}"
echo "# script sha $sha; EVALSHA $sha ${args[*]}"

# CPU seconds Redis has used so far (user + sys).
redis_cpu() {
  redis-cli -h "$HOST" -p "$PORT" INFO cpu |
    awk -F: '/^used_cpu_(user|sys):/ { s += $2 } END { printf "%.6f", s }'
}

# rps, p50/p99 (ms) and Redis CPU (us) per request of one redis-benchmark
# run (-n requests), from its CSV line and INFO cpu.
rb() {
  local n="$1"; shift
  local before; before="$(redis_cpu)"
  local line
  line="$(redis-benchmark -h "$HOST" -p "$PORT" --csv -n "$n" "$@" EVALSHA "$sha" "${args[@]}" |
    awk -F'","' 'NR == 2 { print $2, $5, $7 }')"
  local after; after="$(redis_cpu)"
  echo "$line $(awk -v a="$after" -v b="$before" -v n="$n" 'BEGIN { printf "%.2f", (a - b) * 1e6 / n }')"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "## round $round"
  ours="$(bench throughput)"
  echo "$ours"
  declare -A ceiling=()
  for c in 1 16 64; do
    n="$N_PLAIN"; [[ "$c" == 1 ]] && n=$((N_PLAIN / 5))
    read -r rps p50 p99 cpu <<<"$(rb "$n" -c "$c")"
    ceiling[$c]="$rps"
    echo "redis-benchmark c=$c P=1 rps=$rps p50_ms=$p50 p99_ms=$p99 redis_cpu_us_per_req=$cpu"
  done
  read -r rps p50 p99 cpu <<<"$(rb "$N_PIPELINED" -c 64 -P 16)"
  ceiling[p16]="$rps"
  echo "redis-benchmark c=64 P=16 rps=$rps p50_ms=$p50 p99_ms=$p99 redis_cpu_us_per_req=$cpu"
  for c in 1 16 64; do
    mine="$(sed -n "s/^ours inflight=$c checks_per_s=\([0-9.]*\).*/\1/p" <<<"$ours")"
    awk -v c="$c" -v m="$mine" -v r="${ceiling[$c]}" \
      'BEGIN { printf "ratio ours/redis-benchmark at %s in flight (unpipelined, -c %s): %.2f\n", c, c, m / r }'
  done
  mine64="$(sed -n 's/^ours inflight=64 checks_per_s=\([0-9.]*\).*/\1/p' <<<"$ours")"
  awk -v m="$mine64" -v r="${ceiling[p16]}" \
    'BEGIN { printf "ratio ours(64 in flight)/redis-benchmark -c 64 -P 16: %.2f (target >= 0.7)\n", m / r }'
  redis-cli -h "$HOST" -p "$PORT" DEL "$key" >/dev/null
  bench flood
done
