-- One session's subscription, or its end, and the cluster's subscription table with it (atomic, so exactly one
-- call sees a subscription created or deleted). ARGV: prefix, 'sub' | 'unsub', session id, subscription id,
-- record (URI, or '<policy> <URI>'), now (ms). Returns 1 when this call made the first subscriber ('sub') or
-- removed the last ('unsub').
local p, mode, s, id, rec = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ts, member = p .. 'ts:' .. rec, id .. ' ' .. rec
if mode == 'sub' then
  redis.call('SADD', p .. 'st:' .. s, member)
  if redis.call('SADD', ts, s) == 1 and redis.call('SCARD', ts) == 1 then
    redis.call('HSET', p .. 'subs', id, ARGV[6] .. ' ' .. rec)
    return 1
  end
  redis.call('HSETNX', p .. 'subs', id, ARGV[6] .. ' ' .. rec)
  return 0
end
redis.call('SREM', p .. 'st:' .. s, member)
if redis.call('SREM', ts, s) == 1 and redis.call('EXISTS', ts) == 0 then
  redis.call('HDEL', p .. 'subs', id)
  return 1
end
return 0
