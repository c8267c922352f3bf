#!/usr/bin/env bash
# The performance report in one command: every comparison of tower-edge
# against its peer crate or its floor, in instructions (callgrind, through
# benches/icount.sh) where a deterministic count fits and in wall clock
# (criterion, wrk, redis-benchmark), printed as one table:
#
#   name | ours | peer | ratio | goal | met
#
# one row per comparison, always in the same order. "overhead" rows compare
# what each side adds to the bare service of the same bench (layered - bare);
# the other rows compare totals. ratio = ours / peer (for throughput rows
# too, where the goal is >=). met is yes / no, or - where no goal is set.
# A row whose run failed reads "failed" and the script exits non-zero at
# the end; a missed goal never changes the exit status.
#
#   bash benches/report.sh                   # about 10-15 minutes on 2 cores
#   REPORT_DIR=/tmp/report bash benches/report.sh   # keep every run's log
#
# Knobs: ITERS (instructions: requests counted per case, default 5000),
# SLOW_ITERS (RS256 / ES256 under callgrind, default 200), WARM / MEASURE
# (criterion warm-up and measurement seconds, default 0.5 / 1.5),
# E2E_DURATION / E2E_ROUNDS (wrk, default 5s / 2, A B A B), SKIP_REDIS=1
# (leave out the rows that need Redis on REDIS_HOST:REDIS_PORT).
#
# Needs: cargo, valgrind, wrk (installed by e2e.sh from Debian if missing),
# redis-server + redis-tools (redis-cli, redis-benchmark) for the Redis rows.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
peers="$here/peers/Cargo.toml"
ITERS="${ITERS:-5000}"
SLOW_ITERS="${SLOW_ITERS:-200}"
WARM="${WARM:-0.5}"
MEASURE="${MEASURE:-1.5}"
E2E_DURATION="${E2E_DURATION:-5s}"
E2E_ROUNDS="${E2E_ROUNDS:-2}"
# One build of tower-edge's benches serves every run: default features +
# the Redis backend (the Redis rows need it; redis_store.sh,
# idempotency_redis.sh and response_cache_redis.sh build with the same).
export ICOUNT_FEATURES="${ICOUNT_FEATURES:-redis}"
out="${REPORT_DIR:-$(mktemp -d)}"
mkdir -p "$out"
started=$SECONDS

for tool in cargo valgrind; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "FATAL: $tool is needed (valgrind: apt-get install -y valgrind)" >&2
    exit 2
  }
done

failed=()
declare -A ic wall
say() { printf '[%4ds] %s\n' "$((SECONDS - started))" "$*" >&2; }

# run <log name> <command...>: runs it with its output in $out/<name>.log;
# a failure is recorded (and its log's tail shown), never fatal here.
run() {
  local name="$1"; shift
  say "$name"
  if "$@" >"$out/$name.log" 2>&1; then
    return 0
  fi
  failed+=("$name")
  echo "FAILED: $name (log: $out/$name.log)" >&2
  tail -20 "$out/$name.log" >&2
  return 1
}

# icount <log name> [--peers] <bench> <case>...: instructions per request
# into ic[<case>].
icount() {
  local name="$1"; shift
  local features="$ICOUNT_FEATURES"
  # The peers crate has none of tower-edge's features.
  [[ "$1" == --peers ]] && features=""
  run "$name" env ICOUNT_FEATURES="$features" bash "$here/icount.sh" "$@" || return 0
  while read -r case n; do
    ic[$case]="$n"
  done < <(awk 'NR > 1 && NF == 2 && $2 ~ /^[0-9]+$/' "$out/$name.log")
}

# criterion <log name> <manifest> <bench> <regex>: the median time of each
# case (ns) into wall[<case>].
criterion() {
  local name="$1" manifest="$2" bench="$3" filter="$4"
  local features=()
  [[ "$manifest" == "$root/Cargo.toml" ]] && features=(--features "$ICOUNT_FEATURES")
  run "$name" cargo bench --quiet --manifest-path "$manifest" "${features[@]}" --bench "$bench" -- \
    --warm-up-time "$WARM" --measurement-time "$MEASURE" --noplot "$filter" || return 0
  # criterion prints the case ID, then (on the same line or the next one)
  # "time:   [low unit estimate unit high unit]".
  while read -r case ns; do
    wall[$case]="$ns"
  done < <(awk '
    function ns(v, u) {
      if (u == "ps") return v / 1000; if (u == "ns") return v;
      if (u == "µs" || u == "us") return v * 1000; if (u == "ms") return v * 1e6;
      return v * 1e9
    }
    /time:/ {
      line = $0; sub(/time:.*/, "", line); gsub(/^[ \t]+|[ \t]+$/, "", line)
      if (line != "") id = line
      s = $0; sub(/.*\[/, "", s); split(s, f, " ")
      printf "%s %.3f\n", id, ns(f[3], f[4]); next
    }
    /^[^ \t]/ { id = $1 }
  ' "$out/$name.log")
}

rows=()
# row <name> <ours> <peer> <goal: "<= x", ">= x" or -> <decimals>: one table
# row; ours and peer empty when a run failed.
row() {
  local name="$1" ours="$2" peer="$3" goal="$4" digits="${5:-0}"
  if [[ -z "$ours" || -z "$peer" ]]; then
    rows+=("$name | failed | failed | - | $goal | -")
    return
  fi
  rows+=("$(awk -v name="$name" -v o="$ours" -v p="$peer" -v goal="$goal" -v d="$digits" 'BEGIN {
    fmt = "%s | %." d "f | %." d "f | "
    printf fmt, name, o, p
    # A peer overhead at or below zero is noise (wall clock on a loaded
    # machine): no ratio, no verdict.
    if (p <= 0) { printf "n/a | %s | -", goal; exit }
    r = o / p
    met = "-"
    if (goal ~ /^<=/) { g = substr(goal, 3) + 0; met = (r <= g) ? "yes" : "no" }
    if (goal ~ /^>=/) { g = substr(goal, 3) + 0; met = (r >= g) ? "yes" : "no" }
    printf "%.2f | %s | %s", r, goal, met
  }')")
}
# over <value> <bare>: the overhead, empty when either is missing.
over() { [[ -n "$1" && -n "$2" ]] && awk -v a="$1" -v b="$2" 'BEGIN { print a - b }'; }

# ---------------------------------------------------------------- builds
say "building (peers crate benches and e2e_server; tower-edge benches with default features + $ICOUNT_FEATURES)"
run build-peers cargo bench --quiet --manifest-path "$peers" --no-run
run build-e2e cargo build --quiet --release --manifest-path "$peers" --bin e2e_server
run build-ours cargo bench --quiet --manifest-path "$root/Cargo.toml" --features "$ICOUNT_FEATURES" --no-run \
  --bench overload --bench response_cache --bench idempotency --bench redis_store --bench response_cache_redis

# ---------------------------------------------------------------- instructions
cg=correlation_vs_tower_http
icount ic-correlation --peers correlation_peers \
  $cg/{bare,tower_edge,tower_http}/{valid_incoming,generated}
rg=rate_limit_vs_tower_governor
icount ic-rate-limit --peers rate_limit_peers \
  $rg/bare/{hot_ip,new_ip} $rg/{tower_edge,tower_governor_headers}/hot_ip \
  $rg/{tower_edge_no_headers,tower_governor}/{hot_ip,new_ip}
jg=jwt_vs_raw_decode
icount ic-jwt-hs --peers jwt_peers $jg/{bare,tower_edge_uncached,raw_decode}/hs256
ITERS="$SLOW_ITERS" icount ic-jwt-rsa-ec --peers jwt_peers $jg/{bare,tower_edge_uncached,raw_decode}/{rs256,es256}
eg=etag_vs_floor
icount ic-etag --peers etag_peers $eg/{bare,tower_edge,tower_edge_304,xxh3_floor,xxh3_floor_304}/{1KiB,64KiB}
fg=full_stack_vs_peers
icount ic-full-stack --peers full_stack_peers $fg/{bare,tower_edge,peers}/anonymous
icount ic-overload overload overload/{bare,tower_concurrency_limit,tower_edge}/admitted
icount ic-response-cache response_cache response_cache/{bare,memory_hit}/1KiB

# ---------------------------------------------------------------- wall clock
criterion wall-correlation "$peers" correlation_peers "^$cg/.*/generated\$"
criterion wall-rate-limit "$peers" rate_limit_peers "^rate_limit_(vs_tower_governor|store_vs_governor)/"
criterion wall-jwt "$peers" jwt_peers "^$jg/"
criterion wall-etag "$peers" etag_peers "^$eg/"
criterion wall-full-stack "$peers" full_stack_peers "^$fg/"
criterion wall-overload "$root/Cargo.toml" overload "^overload/(bare|tower_concurrency_limit|tower_edge)/admitted\$"
criterion wall-response-cache "$root/Cargo.toml" response_cache "^response_cache/"
run memory-peers cargo bench --quiet --manifest-path "$peers" --bench memory_peers
run e2e env ROUNDS="$E2E_ROUNDS" DURATION="$E2E_DURATION" STACKS="bare full peers" bash "$here/e2e.sh"
if [[ "${SKIP_REDIS:-}" != 1 ]]; then
  run redis-store env ROUNDS=1 MEASURE_SECS=2 bash "$here/redis_store.sh"
  run idempotency-redis env MEASURE_SECS=2 bash "$here/idempotency_redis.sh"
  run response-cache-redis env MEASURE_SECS=2 bash "$here/response_cache_redis.sh"
fi

# ---------------------------------------------------------------- the table
# v <log name> <key>: a value of e2e.sh's last lines ("e2e <key> <value>").
v() { awk -v k="$2" '$1 == "e2e" && $2 == k { print $3; exit }' "$out/$1.log" 2>/dev/null; }
row "correlation, valid incoming ID, overhead, instr. (vs tower-http SetRequestId+PropagateRequestId)" \
  "$(over "${ic[$cg/tower_edge/valid_incoming]:-}" "${ic[$cg/bare/valid_incoming]:-}")" \
  "$(over "${ic[$cg/tower_http/valid_incoming]:-}" "${ic[$cg/bare/valid_incoming]:-}")" "<= 1.05"
row "correlation, generated ID, overhead, instr. (vs tower-http, thread-local CSPRNG)" \
  "$(over "${ic[$cg/tower_edge/generated]:-}" "${ic[$cg/bare/generated]:-}")" \
  "$(over "${ic[$cg/tower_http/generated]:-}" "${ic[$cg/bare/generated]:-}")" "<= 1.05"
row "correlation, generated ID, overhead, ns (vs tower-http drawing from the OS)" \
  "$(over "${wall[$cg/tower_edge/generated]:-}" "${wall[$cg/bare/generated]:-}")" \
  "$(over "${wall[$cg/tower_http_os_rng/generated]:-}" "${wall[$cg/bare/generated]:-}")" "<= 0.6" 1
row "correlation, generated ID, overhead, ns (vs tower-http, thread-local CSPRNG)" \
  "$(over "${wall[$cg/tower_edge/generated]:-}" "${wall[$cg/bare/generated]:-}")" \
  "$(over "${wall[$cg/tower_http/generated]:-}" "${wall[$cg/bare/generated]:-}")" "-" 1
for unit in instr ns; do
  if [[ $unit == instr ]]; then declare -n m=ic; d=0; else declare -n m=wall; d=1; fi
  row "rate limit, hot IP, headers on both, overhead, $unit (vs tower_governor use_headers)" \
    "$(over "${m[$rg/tower_edge/hot_ip]:-}" "${m[$rg/bare/hot_ip]:-}")" \
    "$(over "${m[$rg/tower_governor_headers/hot_ip]:-}" "${m[$rg/bare/hot_ip]:-}")" "<= 1.0" $d
  row "rate limit, hot IP, no headers, overhead, $unit (vs tower_governor)" \
    "$(over "${m[$rg/tower_edge_no_headers/hot_ip]:-}" "${m[$rg/bare/hot_ip]:-}")" \
    "$(over "${m[$rg/tower_governor/hot_ip]:-}" "${m[$rg/bare/hot_ip]:-}")" "-" $d
  row "rate limit, new IP each request, no headers, overhead, $unit (vs tower_governor)" \
    "$(over "${m[$rg/tower_edge_no_headers/new_ip]:-}" "${m[$rg/bare/new_ip]:-}")" \
    "$(over "${m[$rg/tower_governor/new_ip]:-}" "${m[$rg/bare/new_ip]:-}")" "<= 1.0" $d
  unset -n m
done
row "rate limit, limited IP (429), ns (vs tower_governor)" \
  "${wall[$rg/tower_edge_no_headers/limited_ip]:-}" "${wall[$rg/tower_governor/limited_ip]:-}" "<= 1.0" 1
sg=rate_limit_store_vs_governor
for k in hot_key new_key; do
  row "rate limit store alone, ${k/_/ }, ns (MemoryStore::check_now vs governor check_key)" \
    "${wall[$sg/tower_edge_check_now/$k]:-}" "${wall[$sg/governor_check_key/$k]:-}" "<= 2.0" 1
done
row "rate limit memory per tracked key, 1M client IPs, bytes (vs governor keyed)" \
  "$(sed -n 's/^tower-edge MemoryStore.* bytes_per_key=\([0-9.]*\).*/\1/p' "$out/memory-peers.log" 2>/dev/null | head -1)" \
  "$(sed -n 's/^governor keyed.* bytes_per_key=\([0-9.]*\).*/\1/p' "$out/memory-peers.log" 2>/dev/null | head -1)" "-" 1
for alg in hs256 rs256 es256; do
  goal="<= 1.05"; [[ $alg == hs256 ]] && goal="<= 1.15"
  row "JWT ${alg^^} uncached, overhead, instr. (vs raw jsonwebtoken::decode)" \
    "$(over "${ic[$jg/tower_edge_uncached/$alg]:-}" "${ic[$jg/bare/$alg]:-}")" \
    "$(over "${ic[$jg/raw_decode/$alg]:-}" "${ic[$jg/bare/$alg]:-}")" "$goal"
  row "JWT ${alg^^} uncached, overhead, ns (vs raw jsonwebtoken::decode)" \
    "$(over "${wall[$jg/tower_edge_uncached/$alg]:-}" "${wall[$jg/bare/$alg]:-}")" \
    "$(over "${wall[$jg/raw_decode/$alg]:-}" "${wall[$jg/bare/$alg]:-}")" "-" 1
done
for size in 1KiB 64KiB; do
  for unit in instr ns; do
    if [[ $unit == instr ]]; then declare -n m=ic; d=0; else declare -n m=wall; d=1; fi
    row "ETag on $size, overhead, $unit (vs buffer + xxh3 by hand)" \
      "$(over "${m[$eg/tower_edge/$size]:-}" "${m[$eg/bare/$size]:-}")" \
      "$(over "${m[$eg/xxh3_floor/$size]:-}" "${m[$eg/bare/$size]:-}")" "-" $d
    row "304 on $size, $unit (vs buffer + xxh3 by hand)" \
      "${m[$eg/tower_edge_304/$size]:-}" "${m[$eg/xxh3_floor_304/$size]:-}" "-" $d
    unset -n m
  done
done
row "full stack, overhead, instr. (vs the peers stack)" \
  "$(over "${ic[$fg/tower_edge/anonymous]:-}" "${ic[$fg/bare/anonymous]:-}")" \
  "$(over "${ic[$fg/peers/anonymous]:-}" "${ic[$fg/bare/anonymous]:-}")" "<= 0.7"
row "full stack, overhead, ns (vs the peers stack)" \
  "$(over "${wall[$fg/tower_edge/anonymous]:-}" "${wall[$fg/bare/anonymous]:-}")" \
  "$(over "${wall[$fg/peers/anonymous]:-}" "${wall[$fg/bare/anonymous]:-}")" "-" 1
row "full stack end to end, wrk requests/s, A B A B (vs the peers stack)" \
  "$(v e2e full_rps)" "$(v e2e peers_rps)" ">= 1.2"
row "full stack end to end, overhead over bare from wrk, us per request (vs the peers stack)" \
  "$(v e2e full_overhead_us)" "$(v e2e peers_overhead_us)" "-" 2
for unit in instr ns; do
  if [[ $unit == instr ]]; then declare -n m=ic; d=0; else declare -n m=wall; d=1; fi
  row "overload admitted path, overhead, $unit (vs tower ConcurrencyLimit)" \
    "$(over "${m[overload/tower_edge/admitted]:-}" "${m[overload/bare/admitted]:-}")" \
    "$(over "${m[overload/tower_concurrency_limit/admitted]:-}" "${m[overload/bare/admitted]:-}")" "<= 1.0" $d
  goal="-"; [[ $unit == instr ]] && goal="<= 1.2"
  row "response cache memory hit, 1 KiB, $unit (vs a bare handler with the same body)" \
    "${m[response_cache/memory_hit/1KiB]:-}" "${m[response_cache/bare/1KiB]:-}" "$goal" $d
  unset -n m
done
if [[ "${SKIP_REDIS:-}" != 1 ]]; then
  rs() { sed -n "$1" "$out/redis-store.log" 2>/dev/null | head -1; }
  row "Redis store, 64 in flight, checks/s (vs redis-benchmark EVALSHA -c 64)" \
    "$(rs 's/^ours inflight=64 checks_per_s=\([0-9.]*\).*/\1/p')" \
    "$(rs 's/^redis-benchmark c=64 P=1 rps=\([0-9.]*\).*/\1/p')" ">= 1.0"
  row "Redis store, 64 in flight, checks/s (vs redis-benchmark EVALSHA -c 64 -P 16)" \
    "$(rs 's/^ours inflight=64 checks_per_s=\([0-9.]*\).*/\1/p')" \
    "$(rs 's/^redis-benchmark c=64 P=16 rps=\([0-9.]*\).*/\1/p')" ">= 0.7"
  for c in 1 16 64; do
    row "idempotency replay from Redis, $c in flight, replays/s (vs redis-benchmark GET, same size)" \
      "$(sed -n "s/^ours inflight=$c replays_per_s=\([0-9.]*\).*/\1/p" "$out/idempotency-redis.log" 2>/dev/null | head -1)" \
      "$(sed -n "s/^redis-benchmark GET .* c=$c rps=\([0-9.]*\).*/\1/p" "$out/idempotency-redis.log" 2>/dev/null | head -1)" ">= 0.8"
    row "idempotency replay from Redis, $c in flight, replays/s (vs redis-rs GET, same size: the client library's floor)" \
      "$(sed -n "s/^ours inflight=$c replays_per_s=\([0-9.]*\).*/\1/p" "$out/idempotency-redis.log" 2>/dev/null | head -1)" \
      "$(sed -n "s/^redis-rs GET inflight=$c rps=\([0-9.]*\).*/\1/p" "$out/idempotency-redis.log" 2>/dev/null | head -1)" "-"
  done
  for c in 1 16 64; do
    row "response cache hit from Redis, $c in flight, hits/s (vs redis-benchmark GET, same size)" \
      "$(sed -n "s/^ours inflight=$c hits_per_s=\([0-9.]*\).*/\1/p" "$out/response-cache-redis.log" 2>/dev/null | head -1)" \
      "$(sed -n "s/^redis-benchmark GET .* c=$c rps=\([0-9.]*\).*/\1/p" "$out/response-cache-redis.log" 2>/dev/null | head -1)" ">= 0.8"
    row "response cache hit from Redis, $c in flight, hits/s (vs redis-rs GET, same size: the client library's floor)" \
      "$(sed -n "s/^ours inflight=$c hits_per_s=\([0-9.]*\).*/\1/p" "$out/response-cache-redis.log" 2>/dev/null | head -1)" \
      "$(sed -n "s/^redis-rs GET inflight=$c rps=\([0-9.]*\).*/\1/p" "$out/response-cache-redis.log" 2>/dev/null | head -1)" "-"
  done
fi

commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
dirty="$(git -C "$root" status --porcelain 2>/dev/null | grep -qv '^??' && echo ", with uncommitted changes")"
cpu="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null)"
echo
echo "# tower-edge performance report"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: ${commit}${dirty:-}; machine: $(nproc) cores, ${cpu:-unknown CPU}"
echo "instructions: ${ITERS} requests per case (RS256/ES256: ${SLOW_ITERS}); criterion: ${WARM} s warm-up, ${MEASURE} s measurement; wrk: ${E2E_ROUNDS} rounds of ${E2E_DURATION}; logs: $out"
echo
echo "name | ours | peer | ratio | goal | met"
printf '%s\n' "${rows[@]}"
echo
say "done in $((SECONDS - started)) s"
if ((${#failed[@]})); then
  echo "runs that failed: ${failed[*]} (logs in $out)" >&2
  exit 1
fi
