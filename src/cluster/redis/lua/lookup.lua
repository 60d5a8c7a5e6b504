local p, mode = ARGV[1], ARGV[2]
local ids
if mode == 'one' then ids = {ARGV[3]}
elseif mode == 'set' then ids = redis.call('SMEMBERS', p .. ARGV[3])
elseif mode == 'zset' then ids = redis.call('ZRANGE', p .. ARGV[3], 0, -1)
elseif mode == 'inter' then ids = redis.call('SINTER', p .. ARGV[3], p .. ARGV[4])
else
  local keys = {}
  for i = 3, #ARGV do keys[#keys + 1] = p .. ARGV[i] end
  ids = redis.call('SUNION', unpack(keys))
end
local out = {}
for _, id in ipairs(ids) do
  local h = redis.call('HMGET', p .. 's:' .. id, 'node', 'epoch', 'authid', 'authroles', 'authmethod', 'protocol', 'connected_at')
  if h[1] and redis.call('GET', p .. 'node:' .. h[1]) == h[2] then
    out[#out + 1] = {id, h[1], h[3], h[4], h[5], h[6], h[7]}
  end
end
return out
