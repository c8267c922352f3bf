# shellcheck shell=bash
# `load` and `chaos` (sourced by local.sh).

loadgen() {
    (
        shop_env
        export PROMETHEUS_URL="$PROM_URL"
        python3 "$HERE/loadgen/main.py" --url "http://127.0.0.1:$EDGE_PORT" --products "$PRODUCTS" \
            --concurrency "$CONCURRENCY" --quota "$RATE_LIMIT" "$@"
    )
}

require_up() {
    [[ -f "$STATE_DIR/env" ]] && pid_alive "$STATE_DIR/haproxy.pid" ||
        die "the deployment is not up: run deploy/local.sh up first"
}

cmd_load() {
    require_up
    log "load: ${LOAD_SECONDS}s, $CONCURRENCY connections through HAProxy on $EDGE_PORT"
    loadgen --duration "$LOAD_SECONDS" --auth-reads 4 --json "$STATE_DIR/load.json"
}

# Seconds since the chaos run started.
since() { echo $(($(date +%s) - CHAOS_START)); }

event() {
    log "t+$(since)s $*"
    echo "t+$(since)s $*" >>"$STATE_DIR/chaos-events.txt"
}

chaos_replica() {
    local victim=$(((REPLICAS + 1) / 2)) pidfile
    pidfile="$STATE_DIR/replica$victim.pid"
    pid_alive "$pidfile" || die "replica $victim is not running"
    event "SIGKILL replica $victim (pid $(cat "$pidfile"))"
    kill -KILL "$(cat "$pidfile")"
    rm -f "$pidfile"
    sleep 8
    replica_up "$victim"
    wait_for "replica $victim after restart" 120 0.25 replica_ready "$victim"
    event "replica $victim restarted and ready"
}

chaos_redis() {
    event "stop Redis (SIGTERM, append-only file flushed) for ${PAUSE_SECONDS}s"
    stop redis
    sleep "$PAUSE_SECONDS"
    redis_up >/dev/null
    event "Redis back"
}

chaos_postgres() {
    local pm pids
    pm="$(postgres_pid)"
    # The postmaster and every backend: stopping the postmaster alone would
    # leave open connections served.
    pids="$pm $(ps -o pid= --ppid "$pm" | tr '\n' ' ')"
    event "SIGSTOP Postgres (postmaster $pm and its backends) for ${PAUSE_SECONDS}s"
    # shellcheck disable=SC2086
    kill -STOP $pids
    sleep "$PAUSE_SECONDS"
    # shellcheck disable=SC2086
    kill -CONT $pids 2>/dev/null || true
    event "SIGCONT Postgres"
}

expected_alerts() {
    local steps="$1" out=""
    [[ ",$steps," == *,replica,* ]] && out+="ShopReplicaDown,"
    # The shop counts Redis failures (RedisBackendBuilder::metrics). The
    # fail-open alert is not expected: a loaded run may have it firing
    # before the step already (a Redis call timing out now and then).
    [[ ",$steps," == *,redis,* ]] && out+="TowerEdgeRedisErrors,"
    echo "${EXPECT_ALERTS:-${out%,}}"
}

cmd_chaos() {
    require_up
    local steps="$CHAOS_STEPS" seconds=10 step status=0 load_pid
    for step in ${steps//,/ }; do
        case "$step" in
        replica) seconds=$((seconds + 12)) ;;
        redis | postgres) seconds=$((seconds + PAUSE_SECONDS + 6)) ;;
        *) die "unknown chaos step '$step' (replica, redis, postgres)" ;;
        esac
    done
    rm -f "$STATE_DIR/chaos-events.txt"
    CHAOS_START="$(date +%s)"
    log "chaos: ${seconds}s of load; steps: $steps"
    loadgen --duration "$seconds" --probe-at -1 --timeline --json "$STATE_DIR/chaos.json" \
        >"$STATE_DIR/chaos-load.txt" 2>&1 &
    load_pid=$!
    echo "$load_pid" >"$STATE_DIR/loadgen.pid"
    sleep 4
    for step in ${steps//,/ }; do
        "chaos_$step"
        sleep 4
    done
    # The load generator ends on its own after `seconds` plus its bounded
    # request timeouts; wait for it.
    wait "$load_pid" || status=$?
    rm -f "$STATE_DIR/loadgen.pid"
    echo
    echo "== chaos events"
    cat "$STATE_DIR/chaos-events.txt"
    echo
    echo "== what the clients saw"
    cat "$STATE_DIR/chaos-load.txt"
    echo
    echo "== alerts"
    PROMETHEUS_URL="$PROM_URL" python3 "$HERE/loadgen/alerts.py" --since "$CHAOS_START" \
        --expect "$(expected_alerts "$steps")" --wait "${ALERT_WAIT:-60}" || status=1
    if [[ "$status" != 0 ]]; then
        log "chaos: FAILED (see above)"
        return 1
    fi
    log "chaos: passed"
}

# Raw read throughput through HAProxy with wrk (no checks): the figure to
# compare between REPLICAS=1 and REPLICAS=3. Anonymous reads, like the
# load generator's (see deploy/loadgen/workload.py).
cmd_bench() {
    require_up
    need wrk wrk
    log "wrk: ${LOAD_SECONDS}s, $CONCURRENCY connections, anonymous reads through HAProxy ($REPLICAS replicas)"
    wrk -t2 -c"$CONCURRENCY" -d"${LOAD_SECONDS}s" -s "$HERE/wrk/reads.lua" \
        "http://127.0.0.1:$EDGE_PORT" -- "$PRODUCTS"
}
