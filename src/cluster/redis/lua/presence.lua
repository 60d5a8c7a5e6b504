-- User presence transitions, atomic so that exactly one node announces each.
-- ARGV: prefix, mode ('online' | 'offline'), authid. Returns 1 when this call changed the user's state.
local p, mode, authid = ARGV[1], ARGV[2], ARGV[3]
local key = p .. 'pu:' .. authid
if mode == 'online' then
  if redis.call('SET', key, '1', 'NX') then return 1 end
  return 0
end
-- offline: only once no session of the user lives on a node whose lease is current
for _, id in ipairs(redis.call('SMEMBERS', p .. 'u:' .. authid)) do
  local node = redis.call('HGET', p .. 's:' .. id, 'node')
  if node and redis.call('GET', p .. 'node:' .. node) then return 0 end
end
return redis.call('DEL', key)
