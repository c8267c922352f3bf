#!/usr/bin/env bash
# A replay from the Redis idempotency store against its ceiling:
# `redis-benchmark GET` of a value of the same size as the stored outcome,
# at 1, 16 and 64 in flight, then the ratios (goal: >= 0.8).
#
#   bash benches/idempotency_redis.sh
#
# Ours: benches/idempotency.rs `replay-throughput` (the whole layer: key
# parsing, fingerprint, the claim's `SET NX GET` returning the outcome, the
# replayed response; one backend, one multiplexed connection). See
# benches/redis_vs_get.sh for what it needs.
set -euo pipefail
exec bash "$(dirname "$0")/redis_vs_get.sh" idempotency redis replay-throughput
