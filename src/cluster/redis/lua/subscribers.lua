-- The live subscribers of one subscription. ARGV: prefix, subscription id. Returns their session ids (none when
-- the subscription does not exist); sessions of nodes whose lease is gone (not yet purged) are left out.
local p, id = ARGV[1], ARGV[2]
local entry = redis.call('HGET', p .. 'subs', id)
if not entry then return {} end
local rec = string.sub(entry, string.find(entry, ' ', 1, true) + 1)
local live, out = {}, {}
for _, s in ipairs(redis.call('SMEMBERS', p .. 'ts:' .. rec)) do
  local h = redis.call('HMGET', p .. 's:' .. s, 'node', 'epoch')
  if h[1] then
    if live[h[1]] == nil then live[h[1]] = redis.call('GET', p .. 'node:' .. h[1]) or false end
    if live[h[1]] == h[2] then out[#out + 1] = s end
  end
end
return out
