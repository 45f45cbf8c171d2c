-- One vote's Idempotency-Key: who answers it, and the answer once given.
-- KEYS[1]: the key's entry, a hash {body, token, answer}.
-- ARGV[1]: 'begin' | 'finish' | 'abort'; ARGV[2]: the caller's token.
--   begin:  ARGV[3] body hash, ARGV[4] ms to hold an unanswered entry.
--           Returns {'new'} (the caller answers it), {'mismatch'} (another body),
--           {'pending'} (another request is answering it) or {'done', the entry's fields
--           as HGETALL lists them} (its answer, and the tally that answer showed).
--   finish: ARGV[3] the answer, ARGV[4] ms to keep it. Stored only by the token's holder.
--   abort:  the holder gives the key up (its vote was refused or failed): a retry decides
--           afresh.
local entry, op, token = KEYS[1], ARGV[1], ARGV[2]
if op == 'begin' then
  local held = redis.call('HMGET', entry, 'body', 'answer')
  if not held[1] then
    redis.call('HSET', entry, 'body', ARGV[3], 'token', token)
    redis.call('PEXPIRE', entry, tonumber(ARGV[4]))
    return {'new'}
  end
  if held[1] ~= ARGV[3] then
    return {'mismatch'}
  end
  if held[2] then
    local found = redis.call('HGETALL', entry)
    table.insert(found, 1, 'done')
    return found
  end
  return {'pending'}
end
if redis.call('HGET', entry, 'token') ~= token then
  return 0
end
if op == 'finish' then
  redis.call('HSET', entry, 'answer', ARGV[3])
  redis.call('HDEL', entry, 'token')
  redis.call('PEXPIRE', entry, tonumber(ARGV[4]))
else
  redis.call('DEL', entry)
end
return 1
