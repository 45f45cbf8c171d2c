-- Take one batch whole, once (several dispatchers may race for it).
-- KEYS: batches (sorted set), the batch (list); ARGV: batch member. Returns its ballot ids.
local ids = redis.call('LRANGE', KEYS[2], 0, -1)
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[1], ARGV[1])
return ids
