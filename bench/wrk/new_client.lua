-- Every request from a new client address (X-Forwarded-For, read by the service with
-- TRUSTED_PROXY_COUNT=1) and without a cookie: each one someone the service has not seen.
-- Env OPTION set: POST a vote for that option to the URL (a 201 every time), from
-- 198.18.0.0/15 (set aside for benchmarks). Unset: GET the URL, as a page view brings a
-- new visitor, from 100.64.0.0/10 (shared address space): none of them has voted.
local option = os.getenv("OPTION")
local counter = 0
local threads = {}

-- thread_id is set per thread by setup(), as a global of that thread.
function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  if option then
    wrk.method = "POST"
    wrk.body = '{"choices": [' .. option .. ']}'
  end
end

function request()
  counter = counter + 1
  -- 65,536 distinct addresses per thread
  local first, second = 100, 64
  if option then first, second = 198, 18 end
  local address = string.format("%d.%d.%d.%d", first, second + thread_id,
                                math.floor(counter / 256) % 256, counter % 256)
  -- The table given replaces wrk.headers: a vote's Content-Type goes in it too.
  local headers = {["X-Forwarded-For"] = address}
  if option then headers["Content-Type"] = "application/json" end
  return wrk.format(nil, nil, headers)
end
