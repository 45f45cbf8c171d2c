-- POST a vote from a new client address every request (X-Forwarded-For, read by the
-- service with TRUSTED_PROXY_COUNT=1), so each one is a distinct voter: a 201 each time.
-- Env: POLL (poll id), OPTION (option id).
local poll = os.getenv("POLL")
local option = os.getenv("OPTION")
local counter = 0
local threads = {}

-- thread_id is set per thread by setup(), as a global of that thread.
function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  wrk.method = "POST"
  wrk.path = "/api/v1/polls/" .. poll .. "/votes"
  wrk.body = '{"choices": [' .. option .. ']}'
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  -- 198.18.0.0/15 (set aside for benchmarks): 65,536 distinct addresses per thread
  local address = string.format("198.%d.%d.%d", 18 + thread_id,
                                math.floor(counter / 256) % 256, counter % 256)
  return wrk.format(nil, nil, {["X-Forwarded-For"] = address,
                               ["Content-Type"] = "application/json"})
end
