local p, mode = ARGV[1], ARGV[2]
-- Returns what it removed as a flat list, per session: id, authid, authrole (first role), the number of its
-- testaments, then each testament (JSON), then the number of its subscriptions, then for each its id and 1 if
-- the session was its last subscriber (the subscription is deleted), else 0.
local out = {}
local function purge_session(id)
  local h = redis.call('HMGET', p .. 's:' .. id, 'authid', 'authroles')
  local role = ''
  if h[1] then redis.call('SREM', p .. 'u:' .. h[1], id) end
  if h[2] then
    local roles = cjson.decode(h[2])
    if roles[1] then role = roles[1] end
    for _, r in ipairs(roles) do redis.call('SREM', p .. 'r:' .. r, id) end
  end
  local subs = {}
  for _, member in ipairs(redis.call('SMEMBERS', p .. 'st:' .. id)) do
    -- '<subscription id> <record>'; a bare topic is an entry of an older version (no subscription id)
    local sub, rec = string.match(member, '^(%d+) (.+)$')
    if not sub then rec = member end
    local ts = p .. 'ts:' .. rec
    if redis.call('SREM', ts, id) == 1 and sub then
      local last = 0
      if redis.call('EXISTS', ts) == 0 then
        redis.call('HDEL', p .. 'subs', sub)
        last = 1
      end
      subs[#subs + 1] = sub
      subs[#subs + 1] = tostring(last)
    end
  end
  local testaments = redis.call('LRANGE', p .. 'tm:' .. id, 0, -1)
  redis.call('DEL', p .. 'st:' .. id, p .. 's:' .. id, p .. 'tm:' .. id)
  redis.call('ZREM', p .. 'ids', id)
  if h[1] then
    out[#out + 1] = id
    out[#out + 1] = h[1]
    out[#out + 1] = role
    out[#out + 1] = tostring(#testaments)
    for _, t in ipairs(testaments) do out[#out + 1] = t end
    out[#out + 1] = tostring(#subs / 2)
    for _, x in ipairs(subs) do out[#out + 1] = x end
  end
end
local function purge_node(node)
  for _, id in ipairs(redis.call('SMEMBERS', p .. 'n:' .. node)) do purge_session(id) end
  for _, combo in ipairs(redis.call('SMEMBERS', p .. 'nrs:' .. node)) do
    redis.call('DEL', p .. 'nr:' .. node .. ':' .. combo)
  end
  redis.call('DEL', p .. 'n:' .. node, p .. 'nrs:' .. node, p .. 'ne:' .. node)
end
if mode == 'node' then
  purge_node(ARGV[3])
  return out
end
for _, node in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  if not redis.call('GET', p .. 'node:' .. node) then
    purge_node(node)
    redis.call('SREM', p .. 'nodes', node)
  end
end
return out
