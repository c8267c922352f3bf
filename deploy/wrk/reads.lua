-- wrk script: anonymous product reads through HAProxy (the catalogue is
-- public), each request from its own client address (X-Forwarded-For in
-- 198.18.0.0/15, RFC 2544), on products skewed towards low ids so the
-- response cache has hot entries. With a tokens file (one per line) the
-- reads are authenticated instead.
--
--   wrk -t2 -c32 -d20s -s deploy/wrk/reads.lua http://127.0.0.1:18080 -- PRODUCTS [TOKENS_FILE]

local tokens = {}
local products = 200
local threads = {}
statuses = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  products = tonumber(args[1] or "200")
  if args[2] then
    local file = assert(io.open(args[2], "r"), "tokens file")
    for line in file:lines() do
      if #line > 0 then tokens[#tokens + 1] = line end
    end
    file:close()
  end
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local id = 1 + math.floor(products * math.random() ^ 3)
  local ip = string.format("198.%d.%d.%d", 18 + math.random(0, 1), math.random(0, 255), math.random(1, 254))
  local headers = { ["X-Forwarded-For"] = ip }
  if #tokens > 0 then
    headers["Authorization"] = "Bearer " .. tokens[math.random(#tokens)]
  end
  return wrk.format("GET", "/products/" .. id, headers)
end

function response(status)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do parts[#parts + 1] = status .. ": " .. n end
  table.sort(parts)
  io.write("statuses {" .. table.concat(parts, ", ") .. "}\n")
  io.write(string.format("p50 %.1f ms, p99 %.1f ms, requests %d, socket errors %d\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
