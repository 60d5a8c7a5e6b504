-- The offline inbox of one user: `ib:<authid>` (sorted set: publication id scored by when it was kept) and
-- `ibm:<authid>` (hash: publication id -> wire envelope). ARGV: prefix, mode, authid, now (ms), ttl (ms), then
--   put <publication id> <size> <envelope>: keeps it; drops what is older than ttl, then the oldest beyond size
--   taken <publication id>: a socket of hers took it; it is no longer kept
--   take <topic>: returns (and removes) the envelopes kept for her on that topic, oldest first
local p, mode, authid, now, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local z, h = p .. 'ib:' .. authid, p .. 'ibm:' .. authid
if mode == 'taken' then
  redis.call('ZREM', z, ARGV[6])
  redis.call('HDEL', h, ARGV[6])
  return {}
end
for _, old in ipairs(redis.call('ZRANGEBYSCORE', z, '-inf', '(' .. (now - ttl))) do redis.call('HDEL', h, old) end
redis.call('ZREMRANGEBYSCORE', z, '-inf', '(' .. (now - ttl))
if mode == 'put' then
  local id, size = ARGV[6], tonumber(ARGV[7])
  redis.call('ZADD', z, now, id)
  redis.call('HSET', h, id, ARGV[8])
  local over = redis.call('ZCARD', z) - size
  if over > 0 then
    for _, old in ipairs(redis.call('ZRANGE', z, 0, over - 1)) do redis.call('HDEL', h, old) end
    redis.call('ZREMRANGEBYRANK', z, 0, over - 1)
  end
  redis.call('PEXPIRE', z, ttl)
  redis.call('PEXPIRE', h, ttl)
  return {}
end
-- take
local topic, out = ARGV[6], {}
for _, id in ipairs(redis.call('ZRANGE', z, 0, -1)) do
  local envelope = redis.call('HGET', h, id)
  if not envelope then
    redis.call('ZREM', z, id)
  else
    local ok, message = pcall(cjson.decode, envelope)
    if ok and message.topic == topic then
      out[#out + 1] = envelope
      redis.call('ZREM', z, id)
      redis.call('HDEL', h, id)
    end
  end
end
return out
