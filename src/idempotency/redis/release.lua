-- tower-edge idempotency: free the key if the claim of this token holds it.
-- KEYS[1]: the key's hash. ARGV: token. Returns 1 released, 0 not held.
local h = redis.call('HMGET', KEYS[1], 's', 't')
if h[1] == 'f' and h[2] == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
