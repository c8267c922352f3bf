#!/usr/bin/env bash
# Product reads of the shop (GET /products/{id}, random ids) with the cache
# tiers off / memory / Redis, and Postgres alone answering the same query
# (pgbench, as many connections as the shop's pool). Loopback only,
# bounded: each run lasts DURATION seconds after a 2 s warm-up.
#
#   cargo build --release --manifest-path examples/shop/Cargo.toml
#   examples/shop/bench.sh            # needs Postgres on :5432, Redis on :6379, wrk, pgbench
#
# Knobs: DURATION (10), CONNS (wrk connections, 32), PRODUCTS (1000),
# POOL (DB_MAX_CONNECTIONS and pgbench clients, 20), BIN (the shop binary).
set -euo pipefail
cd "$(dirname "$0")"

DURATION=${DURATION:-10}
CONNS=${CONNS:-32}
PRODUCTS=${PRODUCTS:-1000}
POOL=${POOL:-20}
BIN=${BIN:-${CARGO_TARGET_DIR:-../../target}/release/shop}
PG=postgres://postgres@127.0.0.1:5432
DB=shop_bench_$$
WORK=$(mktemp -d)
SHOP_PID=""

for tool in wrk pgbench psql; do
  command -v "$tool" >/dev/null || { echo "FATAL: $tool not found (apt-get install wrk postgresql-client)" >&2; exit 1; }
done
[[ -x "$BIN" ]] || { echo "FATAL: no shop binary at $BIN: cargo build --release --manifest-path examples/shop/Cargo.toml" >&2; exit 1; }

cleanup() {
  [[ -n "$SHOP_PID" ]] && kill "$SHOP_PID" 2>/dev/null && wait "$SHOP_PID" 2>/dev/null || true
  psql -q "$PG/test" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

psql -q "$PG/test" -c "CREATE DATABASE $DB"
export DATABASE_URL="$PG/$DB" BIND=127.0.0.1:18181 ADMIN_BIND=127.0.0.1:19191
export RATE_LIMIT="100000000/s burst 100000000" MAX_IN_FLIGHT=100000 MAX_IN_FLIGHT_PER_CLIENT=100000
export DB_MAX_CONNECTIONS=$POOL RUST_LOG=warn
"$BIN" seed --products "$PRODUCTS" >/dev/null

cat > "$WORK/random.lua" <<LUA
math.randomseed(42)
request = function()
  return wrk.format("GET", "/products/" .. math.random(1, $PRODUCTS))
end
LUA

# name, then the environment of the run
shop_run() {
  local name=$1; shift
  env "$@" "$BIN" >"$WORK/$name.log" 2>&1 &
  SHOP_PID=$!
  for _ in $(seq 1 100); do
    curl -fs "http://$ADMIN_BIND/readyz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  wrk -t2 -c"$CONNS" -d2s -s "$WORK/random.lua" "http://$BIND" >/dev/null
  wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$WORK/random.lua" "http://$BIND" >"$WORK/$name.wrk"
  kill "$SHOP_PID"; wait "$SHOP_PID" 2>/dev/null || true; SHOP_PID=""
  local rps p99 non2xx
  rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/$name.wrk")
  p99=$(awk '$1 == "99%" {print $2}' "$WORK/$name.wrk")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$WORK/$name.wrk")
  printf '%-28s %12s req/s   p99 %8s   non-2xx %s\n' "$name" "$rps" "$p99" "${non2xx:-0}"
}

echo "product reads, $CONNS connections, ${DURATION}s, $PRODUCTS products, pool $POOL"
shop_run "shop, cache off" SHOP_CACHE=off
shop_run "shop, memory" SHOP_CACHE=on
shop_run "shop, Redis" SHOP_CACHE=on REDIS_URL=redis://127.0.0.1:6379 REDIS_PREFIX="shop-bench-$$"

# Postgres alone: the handler's query, prepared, over $POOL connections.
cat > "$WORK/select.sql" <<SQL
\set id random(1, $PRODUCTS)
SELECT id, name, price_cents, stock, version FROM products WHERE id = :id;
SQL
( cd "$WORK" && pgbench -n -M prepared -c "$POOL" -j 2 -T "$DURATION" -f select.sql -l \
    -h 127.0.0.1 -U postgres "$DB" >pgbench.out 2>&1 )
tps=$(awk '/^tps/ {print $3; exit}' "$WORK/pgbench.out")
p99=$(cat "$WORK"/pgbench_log.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.2fms", a[i]/1000}')
printf '%-28s %12s req/s   p99 %8s\n' "Postgres alone (pgbench)" "$tps" "$p99"
