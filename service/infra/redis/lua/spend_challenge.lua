-- Spend a proof-of-work solution: the first to spend it may vote with it, once.
-- KEYS[1] the solution's spent key (keys.challenge_spent);
-- KEYS[2] the poll's "spent in the database" marker (keys.challenge_spent_in_database).
-- ARGV[1] who spends it (the vote attempt's token: the same attempt may ask again);
-- ARGV[2] how long the solution stays remembered (ms, its challenge's remaining life);
-- ARGV[3] ms to set the marker for (a process that spent solutions in the database
-- while Redis was away says so once it is back), or 0.
-- Returns {spent: 1 this attempt's / 0 used already, 1 when the database must be asked too}.
local marker_ms = tonumber(ARGV[3])
if marker_ms > 0 then
  redis.call('SET', KEYS[2], '1', 'PX', marker_ms)
end
local ttl = math.max(1, tonumber(ARGV[2]))
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ttl) then
  if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return {0, 0}
  end
end
return {1, redis.call('EXISTS', KEYS[2])}
