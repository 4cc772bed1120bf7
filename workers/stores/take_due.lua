-- Take the parked jobs whose turn has come, leasing them: a mover that dies before it
-- re-publishes them gives them back when the lease ends.
-- KEYS: delayed zset.  ARGV: max count, lease (s).  Returns the due members.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), member)
end
return due
