local p, mode = ARGV[1], ARGV[2]
local wanted = {}
for i = 3, #ARGV do wanted[ARGV[i]] = true end
local total = 0
for _, node in ipairs(redis.call('SMEMBERS', p .. 'nodes')) do
  local epoch = redis.call('GET', p .. 'node:' .. node)
  if epoch and redis.call('GET', p .. 'ne:' .. node) == epoch then
    if mode == 'all' then
      total = total + redis.call('SCARD', p .. 'n:' .. node)
    else
      for _, combo in ipairs(redis.call('SMEMBERS', p .. 'nrs:' .. node)) do
        for _, r in ipairs(cjson.decode(combo)) do
          if wanted[r] then
            total = total + redis.call('SCARD', p .. 'nr:' .. node .. ':' .. combo)
            break
          end
        end
      end
    end
  end
end
return total
