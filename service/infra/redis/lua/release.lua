-- Release the claims a ballot holds (its commit failed, or it was withdrawn).
-- KEYS: "seen" keys; ARGV[1]: ballot id. Claims held by another ballot are kept.
local prefix = ARGV[1] .. ':'
local released = 0
for _, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held and string.sub(held, 1, #prefix) == prefix then
    redis.call('DEL', key)
    released = released + 1
  end
end
return released
