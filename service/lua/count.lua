-- Count one committed ballot in each tally scope (the poll, and its context if any).
-- KEYS: per scope four keys: tally hash T, pending list P, rebuild lock L, included set X.
-- ARGV[1]: ballot id; ARGV[2]: updated (ms); ARGV[3]: "1" if it has an other answer;
-- ARGV[4]: seconds to keep a pending entry; ARGV[5..]: chosen option ids.
--
-- A live tally (T exists, no rebuild running) counts the ballot unless the last rebuild
-- read it from the database already (X). Otherwise the ballot waits in P, and the
-- rebuild that stores T counts it exactly when the database snapshot did not.
local id = ARGV[1]
local options = {}
for i = 5, #ARGV do
  options[#options + 1] = ARGV[i]
end
local entry = id .. '|' .. ARGV[2] .. '|' .. ARGV[3] .. '|' .. table.concat(options, ',')

for s = 1, #KEYS, 4 do
  local tally, pending, lock, included = KEYS[s], KEYS[s + 1], KEYS[s + 2], KEYS[s + 3]
  if redis.call('EXISTS', tally) == 1 and redis.call('EXISTS', lock) == 0 then
    if redis.call('SISMEMBER', included, id) == 0 then
      redis.call('HINCRBY', tally, 'total', 1)
      if ARGV[3] == '1' then
        redis.call('HINCRBY', tally, 'other', 1)
      end
      for _, option in ipairs(options) do
        redis.call('HINCRBY', tally, 'o:' .. option, 1)
      end
      redis.call('HSET', tally, 'updated', ARGV[2])
    end
  else
    redis.call('RPUSH', pending, entry)
    -- Only entries pushed after a rebuild takes its lock matter to it (earlier ballots
    -- are in its snapshot), so a tally nobody reads keeps a short list, not a long one.
    redis.call('EXPIRE', pending, tonumber(ARGV[4]))
  end
end
return 1
