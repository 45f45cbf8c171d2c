-- Store a tally read from a database snapshot, plus the ballots that waited meanwhile.
-- KEYS: T (tally hash), P (pending list), L (rebuild lock), X (included set).
-- ARGV[1]: the lock token; ARGV[2]: seconds to remember X; ARGV[3]: n, the number of
-- field/value pairs that follow (the snapshot's counts); then the ids of ballots the
-- snapshot holds among recent and pending ones.
-- Returns 1 when stored, 0 when the lock was lost (another rebuild took over).
local tally, pending, lock, included = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if redis.call('GET', lock) ~= ARGV[1] then
  return 0
end
local pairs_end = 3 + 2 * tonumber(ARGV[3])
local in_snapshot = {}
for i = pairs_end + 1, #ARGV do
  in_snapshot[ARGV[i]] = true
end

redis.call('DEL', tally)
redis.call('HSET', tally, unpack(ARGV, 4, pairs_end))

-- Ballots counted while the tally was missing: add those the snapshot did not see.
for _, entry in ipairs(redis.call('LRANGE', pending, 0, -1)) do
  local id, updated, other, options = string.match(entry, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
  if id and not in_snapshot[id] then
    redis.call('HINCRBY', tally, 'total', 1)
    if other == '1' then
      redis.call('HINCRBY', tally, 'other', 1)
    end
    for option in string.gmatch(options, '[^,]+') do
      redis.call('HINCRBY', tally, 'o:' .. option, 1)
    end
    local current = tonumber(redis.call('HGET', tally, 'updated') or '0')
    if tonumber(updated) > current then
      redis.call('HSET', tally, 'updated', updated)
    end
  end
end
redis.call('DEL', pending)

-- Late counts of ballots the snapshot already held must not count them again.
redis.call('DEL', included)
local batch = {}
for i = pairs_end + 1, #ARGV do
  batch[#batch + 1] = ARGV[i]
  if #batch == 5000 then
    redis.call('SADD', included, unpack(batch))
    batch = {}
  end
end
if #batch > 0 then
  redis.call('SADD', included, unpack(batch))
end
redis.call('EXPIRE', included, tonumber(ARGV[2]))
redis.call('DEL', lock)
return 1
