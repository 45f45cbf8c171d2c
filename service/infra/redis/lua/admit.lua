-- Admit one vote before its ballot is written: rate limits, Idempotency-Key, duplicate
-- check, in one atomic step (the vote's first of two Redis round trips).
-- Every key is of one poll (one `{poll id}` hash tag: one Redis Cluster slot).
--
-- KEYS, in this order: the poll's version token when ARGV[6] is not empty; the poll's
-- tally when ARGV[7] (max_votes) is above 0; one moving-window list per rate limit (ARGV[2] of them); the Idempotency-Key entry when
-- ARGV[3] is '1'; the integrity hash of this hour; the caller's lease key (keys.lease);
-- one "seen" key per voter identity (the rest).
-- ARGV[1] now (ms); ARGV[2] n limits; ARGV[3] '1' with an Idempotency-Key;
-- ARGV[4] integrity retention (s); ARGV[5] '1' to count a duplicate here;
-- ARGV[6] the version token of the caller's copy of the poll, '' when it is known fresh;
-- ARGV[7] the poll's max_votes, 0 for none;
-- then per limit: amount, window (ms);
-- then with a key: the caller's token, the body hash, ms to hold an unanswered entry;
-- then the claim: ballot id, vote window (ms, 0 = one vote ever), orphan age (ms), the
-- caller's lease token, lease (ms);
-- then one identity kind per "seen" key (the integrity field of a duplicate).
--
-- Returns one of:
--   {'stale'}                  the poll changed since the caller's copy: nothing done
--   {'limited', ms until the oldest counted attempt leaves its window}
--   {'mismatch'}               the key was used with another body
--   {'pending'}                another request holds the key
--   {'done', entry fields...}  the key's stored answer (HGETALL of the entry)
--   {'full'}                   the poll's tally counts max_votes ballots already
--                              (counted as poll_closed; nothing claimed)
--   {'duplicate', index, claim, counted}  identity `index` (1-based) is claimed by a
--                              committed ballot; counted is 1 when this script counted
--                              the refusal (integrity)
--   {'in_flight', index, claim}   claimed by a vote not yet committed whose process is
--                              alive (its lease is set) and that is younger than the
--                              orphan age: its fate is not known yet
--   {'unresolved', index, claim}  claimed by a vote not known to be committed whose
--                              process is gone (or that is older than any request may
--                              live): the caller asks the database whether its ballot exists
--   {'admitted'}               every identity is claimed for ARGV ballot id
-- Claims are "<ballot id>:<until ms>:<claimed ms>:<owner>" (until 0 = forever), owner
-- the lease token of the process that made it until count.lua's 'confirm' step marks
-- the ballot committed with '-'; release.lua frees them.
local now = tonumber(ARGV[1])
local n_limits = tonumber(ARGV[2])
local keyed = ARGV[3] == '1'
local retention = tonumber(ARGV[4])
local count_duplicate = ARGV[5] == '1'
local max_votes = tonumber(ARGV[7])
local a = 8
local k = 1

-- The caller's cached copy of the poll decided what to ask: it must still be current.
if ARGV[6] ~= '' then
  if redis.call('GET', KEYS[1]) ~= ARGV[6] then
    return {'stale'}
  end
  k = 2
end
local tally
if max_votes > 0 then
  tally = KEYS[k]
  k = k + 1
end

local integrity = KEYS[k + n_limits + (keyed and 1 or 0)]
local function refused(field)
  redis.call('HINCRBY', integrity, field, 1)
  redis.call('EXPIRE', integrity, retention)
end

-- Rate limits (moving window, as the `limits` library keeps one): every attempt counts,
-- refused ones too; an attempt over any limit is refused and adds to none.
local limits = {}
for i = 1, n_limits do
  limits[i] = {KEYS[k], tonumber(ARGV[a]), tonumber(ARGV[a + 1])}
  k = k + 1
  a = a + 2
end
for _, limit in ipairs(limits) do
  local oldest = redis.call('LINDEX', limit[1], limit[2] - 1)
  if oldest and tonumber(oldest) > now - limit[3] then
    refused('rate_limited')
    -- Requests' clocks differ a little: never promise more than a window.
    return {'limited', math.min(limit[3], tonumber(oldest) + limit[3] - now)}
  end
end
for _, limit in ipairs(limits) do
  redis.call('LPUSH', limit[1], now)
  redis.call('LTRIM', limit[1], 0, limit[2] - 1)
  redis.call('PEXPIRE', limit[1], limit[3])
end

-- Idempotency-Key (idempotency.lua's 'begin'): the entry is only made once the vote is
-- admitted, so a refused vote leaves the key free for a retry to be judged afresh.
local entry, token, body, hold_ms
if keyed then
  entry = KEYS[k]
  k = k + 1
  token, body, hold_ms = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local held = redis.call('HMGET', entry, 'body', 'answer')
  if held[1] then
    if held[1] ~= body then
      return {'mismatch'}
    end
    if held[2] then
      local found = redis.call('HGETALL', entry)
      table.insert(found, 1, 'done')
      return found
    end
    return {'pending'}
  end
end
k = k + 1  -- the integrity hash

local lease = KEYS[k]
k = k + 1

-- A poll with max_votes whose tally (committed ballots only: count.lua counts a ballot
-- after its commit) has them all is full: refused here, before anything is claimed and
-- without asking the database. Below that, the database gives the last places out
-- (service/voting/records.py): a tally being rebuilt (absent) refuses nothing.
if tally and tonumber(redis.call('HGET', tally, 'total') or '0') >= max_votes then
  refused('poll_closed')
  return {'full'}
end

-- The duplicate check: all identities or none.
local ballot, window, orphan_ms = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
local me, lease_ms = ARGV[a + 3], tonumber(ARGV[a + 4])
a = a + 5
local leases = string.sub(lease, 1, #lease - #me)
local first_seen = k
for i = first_seen, #KEYS do
  local held = redis.call('GET', KEYS[i])
  if held then
    local until_ms, claimed_ms, owner = string.match(held, '^[^:]*:(%d+):?(%d*):?([^:]*)')
    until_ms = tonumber(until_ms)
    if until_ms == nil or until_ms == 0 or until_ms > now then
      local index = i - first_seen + 1
      if owner == '-' then
        if count_duplicate then
          refused('duplicate_vote:' .. ARGV[a + index - 1])
          return {'duplicate', index, held, 1}
        end
        return {'duplicate', index, held, 0}
      end
      -- Not known committed: in flight while young and its process's lease is alive
      -- (a claim written before owners were kept is taken to be alive while young).
      claimed_ms = tonumber(claimed_ms)
      if claimed_ms and now - claimed_ms < orphan_ms and (owner == nil or owner == ''
          or redis.call('EXISTS', leases .. owner) == 1) then
        return {'in_flight', index, held}
      end
      return {'unresolved', index, held}
    end
  end
end
local until_ms = 0
if window > 0 then
  until_ms = now + window
end
local value = ballot .. ':' .. until_ms .. ':' .. now .. ':' .. me
for i = first_seen, #KEYS do
  if window > 0 then
    redis.call('SET', KEYS[i], value, 'PX', window)
  else
    redis.call('SET', KEYS[i], value)
  end
end
if #KEYS >= first_seen then
  redis.call('SET', lease, '1', 'PX', lease_ms)
end
if keyed then
  redis.call('HSET', entry, 'body', body, 'token', token)
  redis.call('PEXPIRE', entry, hold_ms)
end
return {'admitted'}
