local p, after, limit, mode = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local wanted = {}
for i = 5, #ARGV do wanted[ARGV[i]] = true end
local live = {}
local out = {}
local cursor = '(' .. after
while #out < limit do
  local ids = redis.call('ZRANGEBYSCORE', p .. 'ids', cursor, '+inf', 'LIMIT', 0, limit)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local h = redis.call('HMGET', p .. 's:' .. id, 'node', 'epoch', 'authroles')
    if h[1] then
      if live[h[1]] == nil then live[h[1]] = redis.call('GET', p .. 'node:' .. h[1]) end
      local keep = live[h[1]] == h[2]
      if keep and mode == 'roles' then
        keep = false
        for _, r in ipairs(cjson.decode(h[3])) do
          if wanted[r] then keep = true break end
        end
      end
      if keep then
        out[#out + 1] = id
        if #out == limit then break end
      end
    end
  end
  cursor = '(' .. ids[#ids]
end
return out
