-- tower-edge idempotency: store the outcome of the claim that still holds
-- the key (fencing token and fingerprint), atomically.
-- KEYS[1]: the key (see claim.lua). ARGV: fingerprint, token (16 hex
-- digits), outcome, retention (ms).
-- Returns 1 stored, 0 fenced (another claim holds the key, or none does).
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 1) ~= 'f' or string.sub(v, 2, 33) ~= ARGV[1]
  or string.sub(v, 34, 49) ~= ARGV[2] then
  return 0
end
redis.call('SET', KEYS[1], 'c' .. ARGV[1] .. ARGV[3], 'PX', ARGV[4])
return 1
