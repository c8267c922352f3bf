#!/usr/bin/env bash
# A Redis-backed path of ours against its ceiling: `redis-benchmark GET` of
# a value of the same size as what our path reads, at 1, 16 and 64 in
# flight, then the ratios (the goals: >= 0.8). Used by
# benches/idempotency_redis.sh and benches/response_cache_redis.sh.
#
#   [ROUNDS=3] bash benches/redis_vs_get.sh <bench> <features> [bench args...]
#
# <bench> prints `ours inflight=N <what>_per_s=X value_bytes=Y` for N in
# 1, 16, 64. Needs redis-server on REDIS_HOST:REDIS_PORT (default
# 127.0.0.1:6379) and redis-cli / redis-benchmark (apt-get install
# redis-tools).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
bench="$1"
features="$2"
shift 2
HOST="${REDIS_HOST:-127.0.0.1}"
PORT="${REDIS_PORT:-6379}"
export REDIS_URL="redis://${HOST}:${PORT}"
export MEASURE_SECS="${MEASURE_SECS:-3}"
N="${N:-100000}"

for tool in redis-cli redis-benchmark; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "FATAL: $tool is needed (apt-get install -y redis-tools)" >&2
    exit 1
  }
done
redis-cli -h "$HOST" -p "$PORT" ping >/dev/null || {
  echo "FATAL: no Redis on $HOST:$PORT (run redis-server)" >&2
  exit 1
}

(cd "$root" && cargo bench --quiet --features "$features" --bench "$bench" --no-run) >&2
# ROUNDS rounds (default 3), each running, per level of in flight, ours
# (with the redis-rs floor) and then redis-benchmark, so every side sees
# the machine's moods alike; each figure printed is the median of its
# rounds (one run each, minutes apart, moved the ratio at 16 in flight
# between 0.66 and 0.89 on the same code).
ROUNDS="${ROUNDS:-3}"
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
key="te-bench:get-floor:$$"
declare -A mine_runs floor_runs rb_runs
what="" size=""
for round in $(seq 1 "$ROUNDS"); do
  for c in 1 16 64; do
    ours="$(cd "$root" && INFLIGHT="$c" cargo bench --quiet --features "$features" --bench "$bench" -- "$@")"
    { grep '^#' <<<"$ours" || true; } | sed "s/^/# round $round: /"
    if [[ -z "$size" ]]; then
      size="$(sed -n 's/^ours inflight=[0-9]* .*value_bytes=\([0-9]*\).*/\1/p' <<<"$ours")"
      what="$(sed -n 's/^ours inflight=[0-9]* \([a-z_]*_per_s\)=.*/\1/p' <<<"$ours")"
      head -c "$size" /dev/zero | tr '\0' 'x' | redis-cli -h "$HOST" -p "$PORT" -x SET "$key" >/dev/null
    fi
    mine_runs[$c]+="$(sed -n "s/^ours inflight=$c [a-z_]*_per_s=\([0-9.]*\).*/\1/p" <<<"$ours") "
    floor_runs[$c]+="$(sed -n "s/^redis-rs GET inflight=$c rps=\([0-9.]*\).*/\1/p" <<<"$ours") "
    n="$N"; [[ "$c" == 1 ]] && n=$((N / 5))
    rb_runs[$c]+="$(redis-benchmark -h "$HOST" -p "$PORT" --csv -n "$n" -c "$c" GET "$key" |
      awk -F'","' 'NR == 2 { print $2 }') "
  done
done
for c in 1 16 64; do
  echo "# c=$c rounds: ours ${mine_runs[$c]}| redis-rs GET ${floor_runs[$c]}| redis-benchmark ${rb_runs[$c]}"
  mine="$(tr ' ' '\n' <<<"${mine_runs[$c]}" | { grep . || true; } | median)"
  floor="$(tr ' ' '\n' <<<"${floor_runs[$c]}" | { grep . || true; } | median)"
  rps="$(tr ' ' '\n' <<<"${rb_runs[$c]}" | { grep . || true; } | median)"
  echo "ours inflight=$c $what=$mine value_bytes=$size"
  [[ -n "$floor" ]] && echo "redis-rs GET inflight=$c rps=$floor"
  echo "redis-benchmark GET ${size}-byte value c=$c rps=$rps"
  awk -v c="$c" -v m="$mine" -v r="$rps" -v f="${floor:-0}" 'BEGIN {
    printf "ratio ours/redis-benchmark GET at %s in flight: %.2f (goal >= 0.8)\n", c, m / r
    # redis-rs alone, the same GET: how much of the gap is the client library.
    if (f > 0) printf "ratio redis-rs GET/redis-benchmark GET at %s in flight: %.2f; ours/redis-rs GET: %.2f\n", c, f / r, m / f
  }'
done
redis-cli -h "$HOST" -p "$PORT" DEL "$key" >/dev/null
