#!/usr/bin/env bash
# End-to-end benchmark: an axum hello-world served bare, then behind
# tower-edge's full stack (benches/peers/src/bin/e2e_server.rs), each loaded
# with wrk on loopback for a bounded time. Prints requests/s, p50 and p99
# latency for both, and the full/bare ratios.
#
#   bash benches/e2e.sh                     # -t2 -c64 -d10s
#   DURATION=30s CONNECTIONS=128 bash benches/e2e.sh
#   STACKS="bare correlation rate-limit-ip jwt rate-limit-client cache-headers full" \
#       DURATION=5s bash benches/e2e.sh     # what each layer costs alone
#
# STACKS (default "bare full") lists what to serve, in order: bare, full, or
# a comma-separated list of layers (see e2e_server.rs); each is compared
# with bare, which must be in the list.
#
# Installs wrk from Debian's packages when it is missing (needs root).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
THREADS="${THREADS:-2}"
CONNECTIONS="${CONNECTIONS:-64}"
DURATION="${DURATION:-10s}"
PORT="${PORT:-3917}"
read -r -a stacks <<<"${STACKS:-bare full}"
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

declare -A rps p50 p99
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
  echo "--- $stack ---"
  echo "$out"
  if grep -q "Non-2xx" <<<"$out"; then
    echo "FATAL: the $stack server answered with errors" >&2
    exit 1
  fi
  rps[$stack]="$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
  p50[$stack]="$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")"
  p99[$stack]="$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
done

echo
echo "wrk -t${THREADS} -c${CONNECTIONS} -d${DURATION} on ${ADDR}"
printf '%-24s %14s %12s %12s\n' stack "requests/s" "p50 (us)" "p99 (us)"
for stack in "${stacks[@]}"; do
  printf '%-24s %14s %12s %12s\n' "$stack" "${rps[$stack]}" "${p50[$stack]}" "${p99[$stack]}"
done
for stack in "${stacks[@]}"; do
  [[ "$stack" == bare ]] && continue
  awk -v name="$stack" -v rb="${rps[bare]}" -v rf="${rps[$stack]}" \
      -v b50="${p50[bare]}" -v f50="${p50[$stack]}" \
      -v b99="${p99[bare]}" -v f99="${p99[$stack]}" 'BEGIN {
    printf "%s/bare: throughput %.3f, p50 latency %.3f, p99 latency %.3f\n", name, rf / rb, f50 / b50, f99 / b99
  }'
done
