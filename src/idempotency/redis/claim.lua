-- tower-edge idempotency: claim a key found in flight, atomically (the
-- store's plain `SET NX GET` handles a free or completed key alone).
-- KEYS[1]: the key, a string. ARGV: fingerprint (32 bytes), lease (ms),
-- the new claim's fencing token (16 hex digits).
-- Value: 'c' .. fingerprint .. outcome (completed), or
-- 'f' .. fingerprint .. token .. lease in ms (in flight, with a TTL of
-- twice the lease: the lease runs while more than one lease is left, so
-- the time is Redis's own and replicas need no synchronised clocks).
-- Returns {0, took_over} acquired, {1} in flight, {2, outcome} completed,
-- {3} another fingerprint.
local lease = tonumber(ARGV[2])
local v = redis.call('GET', KEYS[1])
local took = 0
if v then
  local fp = string.sub(v, 2, 33)
  if string.sub(v, 1, 1) == 'c' then
    if fp ~= ARGV[1] then return {3} end
    return {2, string.sub(v, 34)}
  end
  local held = tonumber(string.sub(v, 50)) or 0
  if redis.call('PTTL', KEYS[1]) > held then
    if fp ~= ARGV[1] then return {3} end
    return {1}
  end
  took = 1
end
redis.call('SET', KEYS[1], 'f' .. ARGV[1] .. ARGV[3] .. ARGV[2], 'PX', 2 * lease)
return {0, took}
