#!/usr/bin/env bash
# A hit from the response cache's Redis tier against its ceiling:
# `redis-benchmark GET` of a value of the size of the entry's `HGETALL`
# reply, at 1, 16 and 64 in flight, then the ratios (goal: >= 0.8).
#
#   bash benches/response_cache_redis.sh
#
# Ours: benches/response_cache_redis.rs (the whole layer: key, lookup of
# `HGETALL` + `TIME` in one round trip, decoding, the response with
# `Cache-Status` and `Age`; every request a hit from Redis). See
# benches/redis_vs_get.sh for what it needs.
set -euo pipefail
exec bash "$(dirname "$0")/redis_vs_get.sh" response_cache_redis redis,response-cache
