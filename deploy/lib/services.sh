# shellcheck shell=bash
# Starting and stopping the deployment's processes (sourced by local.sh).

postgres_up() {
    need "$PG_BIN/initdb" postgresql-15
    id postgres >/dev/null 2>&1 || die "no user postgres: apt-get install postgresql-15"
    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
        log "initdb $PG_DATA (as postgres)"
        mkdir -p "$PG_DATA"
        chown postgres: "$PG_DATA"
        chmod 700 "$PG_DATA"
        runuser -u postgres -- "$PG_BIN/initdb" -D "$PG_DATA" -U postgres -A trust \
            --no-sync >"$STATE_DIR/initdb.log" 2>&1 || die "initdb failed, see $STATE_DIR/initdb.log"
    fi
    log "postgres on 127.0.0.1:$PG_PORT"
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DATA/server.log" -w -t 30 \
        -o "-p $PG_PORT -k $PG_DATA -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off" \
        start >/dev/null || die "postgres did not start, see $PG_DATA/server.log"
    wait_for "postgres" 60 0.5 "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"
    psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = 'shop'" | grep -q 1 ||
        psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "CREATE DATABASE shop"
}

postgres_pid() { head -1 "$PG_DATA/postmaster.pid"; }

postgres_down() {
    [[ -f "$PG_DATA/postmaster.pid" ]] || return 0
    # A paused (SIGSTOP) postmaster must be continued before it can stop.
    kill -CONT "$(postgres_pid)" 2>/dev/null || true
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 || true
}

redis_up() {
    need redis-server redis-server
    log "redis on 127.0.0.1:$REDIS_PORT (append-only file, so a restart keeps idempotency keys)"
    start redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$STATE_DIR" \
        --appendonly yes --appendfsync everysec --save "" --dbfilename "redis-$REDIS_PORT.rdb" \
        --appendfilename "redis-$REDIS_PORT.aof"
    wait_for "redis" 50 0.1 redis_ping
}

redis_ping() { [[ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }

replica_up() {
    local i="$1" bin
    bin="$(shop_bin)"
    (
        shop_env
        export BIND="127.0.0.1:$((API_PORT_BASE + i))" ADMIN_BIND="127.0.0.1:$((ADMIN_PORT_BASE + i))"
        export SHOP_REPLICA_ID="r$i"
        start "replica$i" "$bin"
    )
}

replica_ready() { http_ok "http://127.0.0.1:$((ADMIN_PORT_BASE + $1))/readyz"; }

replicas_up() {
    local i
    for i in $(seq 1 "$REPLICAS"); do
        replica_up "$i"
    done
    for i in $(seq 1 "$REPLICAS"); do
        wait_for "replica $i (/readyz on $((ADMIN_PORT_BASE + i)))" 120 0.5 replica_ready "$i"
    done
    log "$REPLICAS replicas ready: API $((API_PORT_BASE + 1))..$((API_PORT_BASE + REPLICAS)), admin $((ADMIN_PORT_BASE + 1))..$((ADMIN_PORT_BASE + REPLICAS))"
}

haproxy_up() {
    need haproxy haproxy
    local servers="" i
    for i in $(seq 1 "$REPLICAS"); do
        servers+="    server r$i 127.0.0.1:$((API_PORT_BASE + i)) check port $((ADMIN_PORT_BASE + i))"$'\n'
    done
    sed -e "s|@EDGE_PORT@|$EDGE_PORT|" -e "s|@STATS_PORT@|$HAPROXY_STATS_PORT|" \
        "$HERE/haproxy/haproxy.cfg.in" >"$STATE_DIR/haproxy.cfg"
    printf '%s' "$servers" >>"$STATE_DIR/haproxy.cfg"
    haproxy -c -q -f "$STATE_DIR/haproxy.cfg" || die "haproxy rejects $STATE_DIR/haproxy.cfg"
    log "haproxy on 127.0.0.1:$EDGE_PORT (stats and /metrics on $HAPROXY_STATS_PORT)"
    start haproxy haproxy -db -f "$STATE_DIR/haproxy.cfg"
    wait_for "haproxy" 60 0.5 http_ok "http://127.0.0.1:$EDGE_PORT/products?limit=1"
}

prometheus_up() {
    need prometheus prometheus
    local targets="" i
    for i in $(seq 1 "$REPLICAS"); do
        targets+="'127.0.0.1:$((ADMIN_PORT_BASE + i))', "
    done
    mkdir -p "$STATE_DIR/rules"
    rm -f "$STATE_DIR"/rules/*.yml
    cp "$HERE"/prometheus/rules/*.yml "$STATE_DIR/rules/"
    if [[ "$FAST_ALERTS" == 1 ]]; then
        log "FAST_ALERTS=1: test-only override, every alert's 'for:' set to 2s in $STATE_DIR/rules"
        sed -i -E 's/^([[:space:]]+for:)[[:space:]].*$/\1 2s/' "$STATE_DIR"/rules/*.yml
    fi
    sed -e "s|@SCRAPE@|$SCRAPE_INTERVAL|g" -e "s|@TARGETS@|${targets%, }|" \
        -e "s|@RULES@|$STATE_DIR/rules/*.yml|" -e "s|@HAPROXY@|127.0.0.1:$HAPROXY_STATS_PORT|" \
        "$HERE/prometheus/prometheus.yml.in" >"$STATE_DIR/prometheus.yml"
    promtool check config "$STATE_DIR/prometheus.yml" >/dev/null || die "promtool rejects $STATE_DIR/prometheus.yml"
    log "prometheus on $PROM_URL (scrape every $SCRAPE_INTERVAL)"
    start prometheus prometheus --config.file="$STATE_DIR/prometheus.yml" \
        --storage.tsdb.path="$STATE_DIR/prometheus-data" --storage.tsdb.retention.time=1d \
        --web.listen-address="127.0.0.1:$PROM_PORT"
    wait_for "prometheus" 60 0.5 http_ok "$PROM_URL/-/ready"
    wait_for "prometheus scraping all $REPLICAS replicas" 60 0.5 all_targets_up
}

all_targets_up() {
    local up
    up="$(curl -fsS --max-time 2 "$PROM_URL/api/v1/query" --data-urlencode 'query=sum(up{job="shop"})' |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(int(float(r[0]["value"][1])) if r else 0)')"
    [[ "$up" == "$REPLICAS" ]]
}

cmd_up() {
    need curl curl
    need psql postgresql-client
    need python3 python3
    need redis-cli redis-tools
    mkdir -p "$STATE_DIR"
    if [[ ! -f "$STATE_DIR/env" ]]; then
        cat >"$STATE_DIR/env" <<EOF
DATABASE_URL='$(database_url)'
REDIS_URL='redis://127.0.0.1:$REDIS_PORT'
JWT_SECRET='$(python3 -c 'import secrets; print(secrets.token_hex(32))')'
JWT_ISSUER='https://idp.example.test'
JWT_AUDIENCE='tower-edge-example'
RATE_LIMIT='$RATE_LIMIT'
EOF
    fi
    build_shop
    postgres_up
    redis_up
    (
        shop_env
        "$(shop_bin)" migrate >>"$STATE_DIR/migrate.log" 2>&1 || die "shop migrate failed, see $STATE_DIR/migrate.log"
        "$(shop_bin)" seed --products "$PRODUCTS" >>"$STATE_DIR/migrate.log" 2>&1 || die "shop seed failed"
    )
    replicas_up
    haproxy_up
    prometheus_up
    cmd_status
    (
        shop_env
        echo
        echo "Try it (a token for 'demo', 1 h):"
        echo "  export TOKEN=$("$(shop_bin)" token --subject demo --scope 'products:read products:write orders:read orders:write' 2>/dev/null | tail -1)"
        echo "  curl -si -H \"Authorization: Bearer \$TOKEN\" http://127.0.0.1:$EDGE_PORT/products/1"
    )
}

cmd_status() {
    local name
    for name in redis haproxy prometheus $(seq -f 'replica%g' 1 "$REPLICAS"); do
        if pid_alive "$STATE_DIR/$name.pid"; then
            printf '  %-11s pid %s\n' "$name" "$(cat "$STATE_DIR/$name.pid")"
        else
            printf '  %-11s not running\n' "$name"
        fi
    done
    if [[ -f "$PG_DATA/postmaster.pid" ]]; then
        printf '  %-11s pid %s (127.0.0.1:%s)\n' postgres "$(postgres_pid)" "$PG_PORT"
    else
        printf '  %-11s not running\n' postgres
    fi
    echo "  API through HAProxy: http://127.0.0.1:$EDGE_PORT   HAProxy stats: http://127.0.0.1:$HAPROXY_STATS_PORT/stats"
    echo "  Prometheus: $PROM_URL/alerts   metrics of replica i: http://127.0.0.1:$((ADMIN_PORT_BASE + 1))/metrics ..."
}

cmd_down() {
    local i
    [[ -d "$STATE_DIR" ]] || {
        log "nothing to stop ($STATE_DIR does not exist)"
        return 0
    }
    for i in $(seq 1 "$REPLICAS"); do
        # A replica paused or killed by chaos is continued, then stopped.
        [[ -f "$STATE_DIR/replica$i.pid" ]] && kill -CONT "$(cat "$STATE_DIR/replica$i.pid")" 2>/dev/null || true
    done
    stop prometheus
    stop haproxy
    for i in $(seq 1 "$REPLICAS"); do
        stop "replica$i"
    done
    stop loadgen
    stop redis
    postgres_down
    if [[ "${KEEP_STATE:-0}" == 1 ]]; then
        log "stopped; state kept in $STATE_DIR"
    else
        rm -rf "$STATE_DIR"
        log "stopped and removed $STATE_DIR"
    fi
}
