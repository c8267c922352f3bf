-- tower-edge idempotency: claim one key, atomically.
-- KEYS[1]: the key's hash. ARGV: fingerprint (32 bytes), lease (ms).
-- Fields: s = 'f' (in flight) or 'c' (completed), fp, t (fencing token),
-- u (lease deadline, ms since the epoch, Redis TIME), r (stored outcome).
-- Returns {0, token, took_over} acquired, {1} in flight, {2, outcome}
-- completed, {3} another fingerprint.
local lease = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local now_us = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
-- One read for every path (a replay included).
local h = redis.call('HMGET', KEYS[1], 's', 'fp', 't', 'u', 'r')
local took = 0
if h[1] == 'c' then
  if h[2] ~= ARGV[1] then return {3} end
  return {2, h[5]}
end
if h[1] == 'f' then
  if tonumber(h[4]) > now_ms then
    if h[2] ~= ARGV[1] then return {3} end
    return {1}
  end
  took = 1
end
-- Tokens grow with every claim, even after the hash expired or was
-- released: never below the microseconds of Redis TIME.
local token = math.max(now_us, tonumber(h[3] or '0') + 1)
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 's', 'f', 'fp', ARGV[1], 't', string.format('%d', token),
  'u', string.format('%d', now_ms + lease))
redis.call('PEXPIRE', KEYS[1], 2 * lease)
return {0, token, took}
