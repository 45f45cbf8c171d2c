-- Count one suspicious refusal (a duplicate, a rate-limited attempt, a missing or wrong
-- proof of work) of an `auto` poll, and switch its challenge on while it looks attacked.
-- KEYS[1] the poll's watch hash (keys.challenge_watch): minute, count, baseline, until.
-- ARGV[1] now (ms); ARGV[2] the current minute (epoch minutes);
-- ARGV[3] the least refusals in one minute that switch it on;
-- ARGV[4] how many times the poll's own baseline per minute switches it on;
-- ARGV[5] the quiet period (ms): on until that long after the last minute over the line;
-- ARGV[6] the baseline's smoothing per minute (0..1): a moving average of quiet minutes;
-- ARGV[7] how long the hash is kept (s).
-- Returns {until (ms; 0 when off), 1 when this refusal switched it on, this minute's count,
-- the line this minute had to reach (a string: Lua numbers lose their fraction)}.
local now, minute = tonumber(ARGV[1]), tonumber(ARGV[2])
local least, factor = tonumber(ARGV[3]), tonumber(ARGV[4])
local quiet, alpha = tonumber(ARGV[5]), tonumber(ARGV[6])
local state = redis.call('HMGET', KEYS[1], 'minute', 'count', 'baseline', 'until')
local last = tonumber(state[1]) or minute
local count = tonumber(state[2]) or 0
local baseline = tonumber(state[3]) or 0
local on_until = tonumber(state[4]) or 0
if minute > last then
  -- Minutes while it was on teach nothing: an attack must not become the baseline.
  if on_until <= now then
    baseline = baseline + alpha * (count - baseline)
  end
  -- The minutes between without a single refusal were quiet ones too.
  baseline = baseline * math.pow(1 - alpha, math.min(minute - last - 1, 100000))
  count = 0
end
count = count + 1
local line = math.max(least, factor * baseline)
local switched = 0
if count >= line then
  if on_until <= now then
    switched = 1
  end
  on_until = now + quiet
end
redis.call('HSET', KEYS[1], 'minute', minute, 'count', count, 'baseline', tostring(baseline),
           'until', on_until)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[7]))
if on_until <= now then
  on_until = 0
end
return {on_until, switched, count, tostring(line)}
