-- tower-edge GCRA, one atomic step per check (see `gcra()` in store.rs).
-- KEYS[1]: the bucket. ARGV: T (ns), tau (ns), cost, burst.
-- The TAT is stored as "<unix seconds>:<nanoseconds>"; all arithmetic is on
-- nanoseconds relative to now (exact while below 2^53 ns, about 104 days).
-- Returns {allowed (0/1), remaining, reset (ns), retry_after (ns)}.
local t = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local burst = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now_s = tonumber(clock[1])
local now_ns = tonumber(clock[2]) * 1000
local base = 0
local stored = redis.call('GET', KEYS[1])
if stored then
  local s, n = string.match(stored, '^(%d+):(%d+)$')
  if s then
    local rel = (tonumber(s) - now_s) * 1000000000 + (tonumber(n) - now_ns)
    if rel > 0 then base = rel end
  end
end
local new_tat = base + cost * t
local horizon = tau + t
if cost <= burst and new_tat <= horizon then
  if new_tat > 0 then
    local abs = now_ns + new_tat
    local secs = math.floor(abs / 1000000000)
    redis.call('SET', KEYS[1], string.format('%d:%d', now_s + secs, abs - secs * 1000000000),
      'PX', string.format('%d', math.ceil(new_tat / 1000000)))
  end
  return {1, math.floor((horizon - new_tat) / t), new_tat, 0}
end
local remaining = 0
if horizon > base then remaining = math.floor((horizon - base) / t) end
local retry = new_tat - horizon
if cost > burst then retry = base end
return {0, remaining, base, retry}
