#!/usr/bin/env bash
# End-to-end benchmark: an axum hello-world served bare, behind tower-edge's
# full stack and behind the same jobs done with the peer crates
# (benches/peers/src/{ours,peers}.rs), each loaded with wrk on loopback for
# a bounded time, the stacks interleaved round after round (A B C A B C) so
# that a drift of the machine hits every stack alike. Prints requests/s,
# p50 and p99 per run and their mean per stack, each stack's throughput
# ratio to bare, and, when both full and peers run, the two ratios of the
# whole-stack goal (issue 23):
#   full/peers throughput                      (goal >= 1.2)
#   full/peers overhead over bare, wall clock  ((1/full - 1/bare) / (1/peers - 1/bare))
#
#   bash benches/e2e.sh                     # bare full peers, 2 rounds, -t2 -c64 -d10s
#   ROUNDS=3 DURATION=30s CONNECTIONS=128 bash benches/e2e.sh
#   STACKS="bare correlation rate-limit-ip jwt rate-limit-client cache-headers full" \
#       ROUNDS=1 DURATION=5s bash benches/e2e.sh   # what each layer costs alone
#
# STACKS (default "bare full peers") lists what to serve, in order: bare,
# full, peers, or a comma-separated list of layers (see e2e_server.rs); each
# is compared with bare, which must be in the list. The last lines
# (`e2e <name> <value>`) are for benches/report.sh.
#
# Installs wrk from Debian's packages when it is missing (needs root).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-10s}"
ROUNDS="${ROUNDS:-2}"
PORT="${PORT:-3917}"
read -r -a stacks <<<"${STACKS:-bare full peers}"
if [[ " ${stacks[*]} " != *" bare "* ]]; then
  echo "FATAL: STACKS must include bare (the baseline)" >&2
  exit 1
fi
ADDR="127.0.0.1:${PORT}"

if ! command -v wrk >/dev/null 2>&1; then
  echo "wrk not found; installing it from Debian's packages" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
fi
if ! command -v wrk >/dev/null 2>&1; then
  echo "FATAL: wrk is needed (apt-get install -y wrk) and could not be installed" >&2
  exit 1
fi

echo "building e2e_server (release)..." >&2
(cd "$here/peers" && cargo build --release --quiet --bin e2e_server)
target_dir="${CARGO_TARGET_DIR:-$here/peers/target}"
server="$target_dir/release/e2e_server"
[[ -x "$server" ]] || { echo "FATAL: $server was not built" >&2; exit 1; }

server_pid=""
stop_server() {
  if [[ -n "$server_pid" ]]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
  fi
}
trap stop_server EXIT

port_answers() { (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null; }

# Converts wrk's "480.12us" / "1.20ms" / "1.01s" to microseconds.
to_us() {
  awk -v v="$1" 'BEGIN {
    n = v + 0
    if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
    else if (v ~ /s$/) print n * 1000000; else print n
  }'
}

# Sums over the rounds, per stack.
declare -A rps p50 p99
for stack in "${stacks[@]}"; do rps[$stack]=0; p50[$stack]=0; p99[$stack]=0; done
runs=()
for round in $(seq 1 "$ROUNDS"); do
  for stack in "${stacks[@]}"; do
    if port_answers; then
      echo "FATAL: something already listens on ${ADDR}; set PORT=..." >&2
      exit 1
    fi
    "$server" --stack "$stack" --addr "$ADDR" >/dev/null &
    server_pid=$!
    for _ in $(seq 1 100); do port_answers && break; sleep 0.1; done
    port_answers || { echo "FATAL: e2e_server --stack $stack did not start on $ADDR" >&2; exit 1; }

    # Warm up briefly, then measure.
    wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "http://${ADDR}/" >/dev/null
    out="$(wrk --latency -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "http://${ADDR}/")"
    stop_server
    echo "--- $stack (round $round) ---"
    echo "$out"
    if grep -q "Non-2xx\|Socket errors" <<<"$out"; then
      echo "FATAL: the $stack server answered with errors" >&2
      exit 1
    fi
    r="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
    l50="$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
    l99="$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
    [[ -n "$r" && -n "$l50" && -n "$l99" ]] || { echo "FATAL: no figures in wrk's output for $stack" >&2; exit 1; }
    runs+=("$(printf '%-24s %6s %14s %12s %12s' "$stack" "$round" "$r" "$l50" "$l99")")
    rps[$stack]="$(awk -v a="${rps[$stack]}" -v b="$r" 'BEGIN { print a + b }')"
    p50[$stack]="$(awk -v a="${p50[$stack]}" -v b="$l50" 'BEGIN { print a + b }')"
    p99[$stack]="$(awk -v a="${p99[$stack]}" -v b="$l99" 'BEGIN { print a + b }')"
  done
done

mean() { awk -v s="$1" -v n="$ROUNDS" 'BEGIN { printf "%.2f", s / n }'; }
echo
echo "wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION} on ${ADDR}, ${ROUNDS} round(s)"
printf '%-24s %6s %14s %12s %12s\n' stack round "requests/s" "p50 (us)" "p99 (us)"
printf '%s\n' "${runs[@]}"
for stack in "${stacks[@]}"; do
  printf '%-24s %6s %14s %12s %12s\n' "$stack" mean "$(mean "${rps[$stack]}")" \
    "$(mean "${p50[$stack]}")" "$(mean "${p99[$stack]}")"
done
for stack in "${stacks[@]}"; do
  [[ "$stack" == bare ]] && continue
  awk -v name="$stack" -v rb="${rps[bare]}" -v rf="${rps[$stack]}" \
      -v b50="${p50[bare]}" -v f50="${p50[$stack]}" \
      -v b99="${p99[bare]}" -v f99="${p99[$stack]}" 'BEGIN {
    printf "%s/bare: throughput %.3f, p50 latency %.3f, p99 latency %.3f\n", name, rf / rb, f50 / b50, f99 / b99
  }'
done
if [[ -n "${rps[full]:-}" && -n "${rps[peers]:-}" ]]; then
  awk -v rb="${rps[bare]}" -v rf="${rps[full]}" -v rp="${rps[peers]}" -v n="$ROUNDS" 'BEGIN {
    # Seconds per request of the server (loaded by wrk on the same cores):
    # the overhead of a stack is what it adds to bare.
    of = 1 / rf - 1 / rb; op = 1 / rp - 1 / rb
    printf "full/peers: throughput %.3f (goal >= 1.2), overhead over bare %.3f (wall clock)\n", rf / rp, of / op
    printf "e2e bare_rps %.0f\ne2e full_rps %.0f\ne2e peers_rps %.0f\n", rb / n, rf / n, rp / n
    printf "e2e full_overhead_us %.3f\ne2e peers_overhead_us %.3f\n", of * n * 1e6, op * n * 1e6
    printf "e2e full_over_peers_throughput %.3f\ne2e full_over_peers_overhead %.3f\n", rf / rp, of / op
  }'
fi
