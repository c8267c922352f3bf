-- tower-edge idempotency: store the outcome of the claim that still holds
-- the key (fencing token and fingerprint), atomically.
-- KEYS[1]: the key's hash. ARGV: fingerprint, token, outcome, retention (ms).
-- Returns 1 stored, 0 fenced (another claim holds the key, or none does).
local h = redis.call('HMGET', KEYS[1], 's', 'fp', 't')
if h[1] ~= 'f' or h[2] ~= ARGV[1] or h[3] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 's', 'c', 'r', ARGV[3])
redis.call('HDEL', KEYS[1], 'u')
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
