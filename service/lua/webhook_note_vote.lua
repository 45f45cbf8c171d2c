-- Note an accepted vote for `vote.created` webhooks: the vote request's one Redis call.
-- KEYS: subscribers (owner ids), batches (sorted set), this batch (list of ballot ids)
-- ARGV: owner id, batch member `<poll id>:<second>`, second, ballot id,
--       cap on waiting batches, batch lifetime (s)
-- Returns 1 noted, 0 the owner has no vote.created webhook, -1 too many batches wait.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return -1 end
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[6]))
redis.call('ZADD', KEYS[2], 'NX', ARGV[3], ARGV[2])
return 1
