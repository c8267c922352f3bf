#!/usr/bin/env bash
# The shop example (#21) scaled out on one machine, loopback only, from
# Debian's packages, no containers:
#
#   deploy/local.sh up      Postgres (own data directory, run as `postgres`),
#                           Redis, REPLICAS shop replicas, HAProxy in front
#                           (round robin, /readyz health checks), Prometheus
#                           scraping every replica with deploy/prometheus/rules
#   deploy/local.sh load    mixed load through HAProxy + the cross-replica
#                           checks (deploy/loadgen/main.py)
#   deploy/local.sh chaos   load while a replica is killed, Redis restarted
#                           and Postgres paused; checks orders and alerts
#   deploy/local.sh bench   read throughput through HAProxy with wrk
#   deploy/local.sh status  what runs, where
#   deploy/local.sh down    stops everything this script started, removes
#                           its state (KEEP_STATE=1 keeps logs and data)
#
# Environment (defaults in brackets):
#   STATE_DIR [deploy/.state]  pids, logs, configs, data
#   REPLICAS [3]  EDGE_PORT [18080]  API_PORT_BASE [18080] (replica i on
#   base+i)  ADMIN_PORT_BASE [19080]  PG_PORT [15432]  REDIS_PORT [16379]
#   PROM_PORT [19090]  HAPROXY_STATS_PORT [18404]
#   SHOP_BIN [built with cargo into $CARGO_TARGET_DIR]  PRODUCTS [200]
#   RATE_LIMIT ["120/min burst 40"]  SCRAPE_INTERVAL [2s]
#   FAST_ALERTS [0]  1: load the rules with every `for:` set to 2s (a
#                   test-only override so alerts fire within a short smoke;
#                   the shipped rules are unchanged)
#   LOAD_SECONDS [20]  CONCURRENCY [32]  CHAOS_STEPS [replica,redis,postgres]
#   EXPECT_ALERTS [derived from CHAOS_STEPS]  PAUSE_SECONDS [4]
#
# Every wait is bounded in count and time; a failed step says what is
# missing and exits non-zero.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
export DEPLOY_HERE="$HERE"
ROOT="$(cd "$HERE/.." && pwd)"
STATE_DIR="${STATE_DIR:-$HERE/.state}"
REPLICAS="${REPLICAS:-3}"
EDGE_PORT="${EDGE_PORT:-18080}"
API_PORT_BASE="${API_PORT_BASE:-18080}"
ADMIN_PORT_BASE="${ADMIN_PORT_BASE:-19080}"
PG_PORT="${PG_PORT:-15432}"
REDIS_PORT="${REDIS_PORT:-16379}"
PROM_PORT="${PROM_PORT:-19090}"
HAPROXY_STATS_PORT="${HAPROXY_STATS_PORT:-18404}"
PRODUCTS="${PRODUCTS:-200}"
RATE_LIMIT="${RATE_LIMIT:-120/min burst 40}"
SCRAPE_INTERVAL="${SCRAPE_INTERVAL:-2s}"
FAST_ALERTS="${FAST_ALERTS:-0}"
LOAD_SECONDS="${LOAD_SECONDS:-20}"
CONCURRENCY="${CONCURRENCY:-32}"
CHAOS_STEPS="${CHAOS_STEPS:-replica,redis,postgres}"
PAUSE_SECONDS="${PAUSE_SECONDS:-4}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
PG_DATA="$STATE_DIR/pg"
PROM_URL="http://127.0.0.1:$PROM_PORT"

log() { printf '[local.sh %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
die() {
    printf '[local.sh] FATAL: %s\n' "$*" >&2
    exit 1
}

need() {
    local tool="$1" package="$2"
    command -v "$tool" >/dev/null 2>&1 || [[ -x "$tool" ]] ||
        die "$tool not found: apt-get install $package"
}

# wait_for DESCRIPTION TRIES SLEEP COMMAND...: runs COMMAND until it
# succeeds, at most TRIES times.
wait_for() {
    local what="$1" tries="$2" pause="$3"
    shift 3
    for _ in $(seq 1 "$tries"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep "$pause"
    done
    die "$what did not come up (tried $tries times, $pause s apart); see $STATE_DIR/*.log"
}

http_ok() { curl -fsS -o /dev/null --max-time 2 "$1"; }

pid_alive() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# start NAME COMMAND...: runs COMMAND in its own session, logs to
# $STATE_DIR/NAME.log, pid in $STATE_DIR/NAME.pid.
start() {
    local name="$1"
    shift
    setsid "$@" >>"$STATE_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$STATE_DIR/$name.pid"
}

# stop NAME: SIGTERM the pid we recorded, SIGKILL after 10 s.
stop() {
    local file="$STATE_DIR/$1.pid" pid
    [[ -f "$file" ]] || return 0
    pid="$(cat "$file")"
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$file"
}

database_url() { echo "postgres://postgres@127.0.0.1:$PG_PORT/shop"; }

shop_bin() {
    if [[ -n "${SHOP_BIN:-}" ]]; then
        echo "$SHOP_BIN"
        return
    fi
    local target="${CARGO_TARGET_DIR:-$ROOT/examples/shop/target}"
    echo "$target/release/shop"
}

build_shop() {
    if [[ -n "${SHOP_BIN:-}" ]]; then
        [[ -x "$SHOP_BIN" ]] || die "SHOP_BIN=$SHOP_BIN is not an executable"
        return
    fi
    [[ -f "$ROOT/examples/shop/Cargo.toml" ]] ||
        die "examples/shop/Cargo.toml not found: the shop example (#21) is needed"
    log "building the shop (cargo build --release --manifest-path examples/shop/Cargo.toml)"
    cargo build --release --quiet --manifest-path "$ROOT/examples/shop/Cargo.toml"
}

# The environment every replica and `shop` subcommand gets.
shop_env() {
    # shellcheck disable=SC1091
    source "$STATE_DIR/env"
    export DATABASE_URL REDIS_URL JWT_SECRET JWT_ISSUER JWT_AUDIENCE RATE_LIMIT
    export TRUSTED_PROXIES="127.0.0.1/32" LOG_FORMAT="${LOG_FORMAT:-json}"
}

source "$HERE/lib/services.sh"
source "$HERE/lib/scenarios.sh"

case "${1:-}" in
up) cmd_up ;;
load) cmd_load ;;
bench) cmd_bench ;;
chaos) cmd_chaos ;;
status) cmd_status ;;
down) cmd_down ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
