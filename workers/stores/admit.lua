-- The admission gate's check (producers/backpressure.py): how many of a batch fit under the
-- queue's high-water mark, reserving that room under a lease; hysteresis down to the low mark.
-- KEYS: the queue's priority lists…, delayed zset, closed flag, reservations hash, lease zset.
-- ARGV: high, low, wanted, token, lease_ms.  Returns {granted, backlog, closed(0/1)}.
local n = #KEYS
local delayed, closed_key, held, leases = KEYS[n-3], KEYS[n-2], KEYS[n-1], KEYS[n]
local high, low, wanted = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZRANGEBYSCORE', leases, '-inf', now_ms)
if #expired > 0 then
  redis.call('HDEL', held, unpack(expired))
  redis.call('ZREMRANGEBYSCORE', leases, '-inf', now_ms)
end
local backlog = redis.call('ZCARD', delayed)
for i = 1, n - 4 do backlog = backlog + redis.call('LLEN', KEYS[i]) end
for _, v in ipairs(redis.call('HVALS', held)) do backlog = backlog + tonumber(v) end
if redis.call('EXISTS', closed_key) == 1 then
  if backlog > low then return {0, backlog, 1} end
  redis.call('DEL', closed_key)
end
local granted = math.min(wanted, high - backlog)
if granted < wanted then redis.call('SET', closed_key, '1') end
if granted <= 0 then return {0, backlog, 1} end
if ARGV[4] == '' then return {granted, backlog, 0} end
redis.call('HSET', held, ARGV[4], granted)
redis.call('ZADD', leases, now_ms + tonumber(ARGV[5]), ARGV[4])
return {granted, backlog, 0}
