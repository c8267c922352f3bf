-- tower-edge idempotency: free the key if the claim of this token holds it.
-- KEYS[1]: the key (see claim.lua). ARGV: token (16 hex digits).
-- Returns 1 released, 0 not held.
local v = redis.call('GET', KEYS[1])
if v and string.sub(v, 1, 1) == 'f' and string.sub(v, 34, 49) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
