local p, mode = ARGV[1], ARGV[2]
local function purge_session(id)
  local h = redis.call('HMGET', p .. 's:' .. id, 'authid', 'authroles')
  if h[1] then redis.call('SREM', p .. 'u:' .. h[1], id) end
  if h[2] then
    for _, r in ipairs(cjson.decode(h[2])) do redis.call('SREM', p .. 'r:' .. r, id) end
  end
  for _, t in ipairs(redis.call('SMEMBERS', p .. 'st:' .. id)) do redis.call('SREM', p .. 'ts:' .. t, id) end
  redis.call('DEL', p .. 'st:' .. id, p .. 's:' .. id)
  redis.call('ZREM', p .. 'ids', id)
end
local function purge_node(node)
  local n = 0
  for _, id in ipairs(redis.call('SMEMBERS', p .. 'n:' .. node)) do purge_session(id); n = n + 1 end
  for _, combo in ipairs(redis.call('SMEMBERS', p .. 'nrs:' .. node)) do
    redis.call('DEL', p .. 'nr:' .. node .. ':' .. combo)
  end
  redis.call('DEL', p .. 'n:' .. node, p .. 'nrs:' .. node, p .. 'ne:' .. node)
  return n
end
if mode == 'node' then return purge_node(ARGV[3]) end
local purged = 0
for _, node in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if not redis.call('GET', p .. 'node:' .. node) then
    purged = purged + purge_node(node)
    redis.call('SREM', p .. 'nodes', node)
  end
end
return purged
