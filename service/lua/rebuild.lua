-- Store a tally computed from the database, unless one appeared meanwhile.
-- KEYS[1]: tally hash. ARGV: field, value, field, value, ...
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
