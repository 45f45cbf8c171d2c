-- GET the widget as a new visitor every request: a new client address (X-Forwarded-For,
-- read by the service with TRUSTED_PROXY_COUNT=1) and no cookie, as each page view of
-- an article brings someone else, whose voted state no process has seen yet.
local counter = 0
local threads = {}

-- thread_id is set per thread by setup(), as a global of that thread.
function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function request()
  counter = counter + 1
  -- 100.64.0.0/10 (shared address space): none of them voted (vote.lua's are 198.18/15)
  local address = string.format("100.%d.%d.%d", 64 + thread_id,
                                math.floor(counter / 256) % 256, counter % 256)
  return wrk.format(nil, nil, {["X-Forwarded-For"] = address})
end
