-- Count one committed ballot, and everything else a vote does once it is committed, in
-- one atomic step (the vote's second Redis round trip; see service/voting/cast.py).
-- KEYS: per tally scope (the poll, and its context if any) four keys: tally hash T,
-- pending list P, rebuild lock L, included set X; then the keys of the steps below, in
-- their order.
-- ARGV[1]: ballot id; ARGV[2]: updated (ms); ARGV[3]: "1" if it has an other answer;
-- ARGV[4]: seconds to keep a pending entry; ARGV[5]: number of scopes; ARGV[6]: number of
-- chosen options; ARGV[7..]: the option ids; then optional steps, each a name and its
-- arguments:
--   'publish', channel                 tell live streams (after the count)
--   'integrity', field, seconds        count the outcome in this hour's hash (1 key)
--   'webhook', owner, member, second, cap, ttl   note the ballot for `vote.created`
--                                      webhooks (3 keys: subscribers, batches, batch)
--   'confirm', n, claim, committed      mark the ballot's claims committed (n keys: the
--                                      voter's "seen" keys): each that still holds
--                                      `claim` (admit.lua's value) becomes `committed`
--   'read'                             return the poll's tally after the count
--   'answer', token, answer, ms, needs tally   keep an Idempotency-Key's answer for its
--                                      retries (idempotency.lua's 'finish'; 1 key, the
--                                      entry), with the tally read ('c:' fields) when the
--                                      answer shows it; after 'read'
-- Returns {webhook noted (1, 0 or -1; 0 without the step), the tally as HGETALL (empty
-- without 'read', or while a rebuild is due: the caller rebuilds it), 1 if the answer
-- was kept}.
--
-- A live tally (T exists, no rebuild running) counts the ballot unless the last rebuild
-- read it from the database already (X). Otherwise the ballot waits in P, and the
-- rebuild that stores T counts it exactly when the database snapshot did not.
local id = ARGV[1]
local scopes = tonumber(ARGV[5])
local n_options = tonumber(ARGV[6])
local options = {}
for i = 7, 6 + n_options do
  options[#options + 1] = ARGV[i]
end
local entry = id .. '|' .. ARGV[2] .. '|' .. ARGV[3] .. '|' .. table.concat(options, ',')

local live = {}
for s = 1, 4 * scopes, 4 do
  local tally, pending, lock, included = KEYS[s], KEYS[s + 1], KEYS[s + 2], KEYS[s + 3]
  if redis.call('EXISTS', tally) == 1 and redis.call('EXISTS', lock) == 0 then
    live[s] = true
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

local noted, tally, kept = 0, {}, 0
local k = 4 * scopes + 1
local a = 7 + n_options
while a <= #ARGV do
  local step = ARGV[a]
  if step == 'publish' then
    redis.call('PUBLISH', ARGV[a + 1], id)
    a = a + 2
  elseif step == 'integrity' then
    redis.call('HINCRBY', KEYS[k], ARGV[a + 1], 1)
    redis.call('EXPIRE', KEYS[k], tonumber(ARGV[a + 2]))
    k = k + 1
    a = a + 3
  elseif step == 'webhook' then
    local subscribers, batches, batch = KEYS[k], KEYS[k + 1], KEYS[k + 2]
    if redis.call('SISMEMBER', subscribers, ARGV[a + 1]) == 0 then
      noted = 0
    elseif redis.call('ZCARD', batches) >= tonumber(ARGV[a + 4]) then
      noted = -1
    else
      redis.call('RPUSH', batch, id)
      redis.call('EXPIRE', batch, tonumber(ARGV[a + 5]))
      redis.call('ZADD', batches, 'NX', ARGV[a + 3], ARGV[a + 2])
      noted = 1
    end
    k = k + 3
    a = a + 6
  elseif step == 'confirm' then
    local n = tonumber(ARGV[a + 1])
    for i = k, k + n - 1 do
      if redis.call('GET', KEYS[i]) == ARGV[a + 2] then
        redis.call('SET', KEYS[i], ARGV[a + 3], 'KEEPTTL')
      end
    end
    k = k + n
    a = a + 4
  elseif step == 'read' then
    if live[1] then
      tally = redis.call('HGETALL', KEYS[1])
    end
    a = a + 1
  elseif step == 'answer' then
    local entry = KEYS[k]
    -- Kept only by the key's holder, and only whole: without the tally it showed, the
    -- caller reads the tally and keeps the answer itself.
    if redis.call('HGET', entry, 'token') == ARGV[a + 1]
        and (ARGV[a + 4] == '0' or #tally > 0) then
      redis.call('HSET', entry, 'answer', ARGV[a + 2])
      for i = 1, #tally, 2 do
        redis.call('HSET', entry, 'c:' .. tally[i], tally[i + 1])
      end
      redis.call('HDEL', entry, 'token')
      redis.call('PEXPIRE', entry, tonumber(ARGV[a + 3]))
      kept = 1
    end
    k = k + 1
    a = a + 5
  else
    return redis.error_reply('count.lua: unknown step ' .. tostring(step))
  end
end
return {noted, tally, kept}
