-- Count (delta 1) or uncount (delta -1) one committed ballot in the tally hashes that
-- exist. A missing hash is not created here: its next read rebuilds it from the database,
-- which already holds this ballot.
-- KEYS: tally hashes. ARGV[1]: delta; ARGV[2]: updated (ms); ARGV[3]: "1" if the ballot
-- has an other answer; ARGV[4..]: chosen option ids.
local delta = tonumber(ARGV[1])
for _, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 1 then
    redis.call('HINCRBY', key, 'total', delta)
    if ARGV[3] == '1' then
      redis.call('HINCRBY', key, 'other', delta)
    end
    for i = 4, #ARGV do
      redis.call('HINCRBY', key, 'o:' .. ARGV[i], delta)
    end
    redis.call('HSET', key, 'updated', ARGV[2])
  end
end
return 1
