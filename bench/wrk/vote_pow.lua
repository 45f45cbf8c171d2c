-- POST a vote from a new client address every request, each with its own solved
-- proof of work: line n of the file SOLUTIONS (the `altcha` payloads) goes to request n
-- of thread n % THREADS, so no solution is sent twice.
-- Env: POLL (poll id), OPTION (option id), SOLUTIONS (a file, one payload per line),
-- THREADS (wrk's -t).
local poll = os.getenv("POLL")
local option = os.getenv("OPTION")
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  local step = tonumber(os.getenv("THREADS"))
  solutions, n = {}, 0
  for line in io.lines(os.getenv("SOLUTIONS")) do
    if n % step == thread_id then
      table.insert(solutions, line)
    end
    n = n + 1
  end
  counter = 0
  wrk.method = "POST"
  wrk.path = "/api/v1/polls/" .. poll .. "/votes"
end

function request()
  counter = counter + 1
  local address = string.format("198.%d.%d.%d", 18 + thread_id,
                                math.floor(counter / 256) % 256, counter % 256)
  local solution = solutions[(counter - 1) % #solutions + 1]
  return wrk.format(nil, nil, {["X-Forwarded-For"] = address,
                               ["Content-Type"] = "application/json"},
                    '{"choices": [' .. option .. '], "altcha": "' .. solution .. '"}')
end
