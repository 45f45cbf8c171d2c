-- Move one changed ballot in its poll's tallies (the poll's, and its context's), in one
-- atomic step: its old choices lose the vote, its new ones gain it. Run once the change
-- is committed (service/voting/change.py); the database is the record.
-- KEYS: per tally scope four keys: tally hash T, pending list P, rebuild lock L,
-- included set X; then the hour's integrity hash.
-- ARGV[1]: the change's token (ballot id @ changed_at, tallies/counts.change_token);
-- ARGV[2]: updated (ms); ARGV[3]: number of scopes; ARGV[4]: "1" if the ballot had an
-- other answer, ARGV[5]: "1" if it has one now; ARGV[6]: n old option ids, then them;
-- then m, the number of new option ids, then them; then the pub/sub channel, the
-- integrity field and the integrity hash's lifetime (seconds).
-- Returns the number of tallies moved.
--
-- A live tally (T exists, no rebuild running) moves unless the rebuild that stored it
-- read this change from the database already (X holds the token). A tally being rebuilt
-- (L held) is dropped with its lock: the rebuild's snapshot may or may not hold the
-- change, so it stores nothing (rebuild.lua finds its lock lost) and the next read
-- rebuilds it exactly. A missing tally is rebuilt from the database when read.
local token = ARGV[1]
local scopes = tonumber(ARGV[3])
local had_other, has_other = ARGV[4], ARGV[5]
local a = 6
local old = {}
for i = a + 1, a + tonumber(ARGV[a]) do
  old[#old + 1] = ARGV[i]
end
a = a + tonumber(ARGV[a]) + 1
local new = {}
for i = a + 1, a + tonumber(ARGV[a]) do
  new[#new + 1] = ARGV[i]
end
a = a + tonumber(ARGV[a]) + 1
local channel, field, keep = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])

local moved = 0
for s = 1, 4 * scopes, 4 do
  local tally, lock, included = KEYS[s], KEYS[s + 2], KEYS[s + 3]
  if redis.call('EXISTS', lock) == 1 then
    redis.call('DEL', tally, lock)
  elseif redis.call('EXISTS', tally) == 1 and redis.call('SISMEMBER', included, token) == 0 then
    for _, option in ipairs(old) do
      redis.call('HINCRBY', tally, 'o:' .. option, -1)
    end
    for _, option in ipairs(new) do
      redis.call('HINCRBY', tally, 'o:' .. option, 1)
    end
    if had_other ~= has_other then
      redis.call('HINCRBY', tally, 'other', has_other == '1' and 1 or -1)
    end
    local current = tonumber(redis.call('HGET', tally, 'updated') or '0')
    if tonumber(ARGV[2]) > current then
      redis.call('HSET', tally, 'updated', ARGV[2])
    end
    moved = moved + 1
  end
end
local integrity = KEYS[4 * scopes + 1]
redis.call('HINCRBY', integrity, field, 1)
redis.call('EXPIRE', integrity, keep)
redis.call('PUBLISH', channel, token)
return moved
