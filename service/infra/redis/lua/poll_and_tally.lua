-- A poll's version token and one of its tallies, in one call (service/polls/cache.py).
-- KEYS[1]: the poll's version key; KEYS[2]: the tally hash (same hash slot).
-- Returns {token or nil, the hash as field, value, field, value, ...}.
return {redis.call('GET', KEYS[1]), redis.call('HGETALL', KEYS[2])}
