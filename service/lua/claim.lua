-- Claim every voter identity of one ballot, all or none, in one atomic step.
-- KEYS: one "seen" key per identity (all of one poll: one hash tag, one slot).
-- ARGV[1]: ballot id; ARGV[2]: now (ms); ARGV[3]: vote window (ms), 0 = one vote ever.
-- A claim's value is "<ballot id>:<until ms>:<claimed ms>" (until 0 = forever), so the
-- window is judged by the caller's clock, a release can check it deletes only its own
-- claim, and a claim whose ballot never reached the database can be recognised by age.
-- Returns {0} when claimed, else {index of the identity already seen (1-based), its claim}.
local now = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
for i, key in ipairs(KEYS) do
  local held = redis.call('GET', key)
  if held then
    local until_ms = tonumber(string.match(held, '^[^:]*:(%d+)'))
    if until_ms == nil or until_ms == 0 or until_ms > now then
      return {i, held}
    end
  end
end
local until_ms = 0
if window > 0 then
  until_ms = now + window
end
local value = ARGV[1] .. ':' .. until_ms .. ':' .. now
for _, key in ipairs(KEYS) do
  if window > 0 then
    redis.call('SET', key, value, 'PX', window)
  else
    redis.call('SET', key, value)
  end
end
return {0}
