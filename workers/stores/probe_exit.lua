-- Leave a probe: one job fewer inside, and its visit recorded. The visits list expires a fixed
-- time after its first visit (the TTL is set only when it has none), so a probe name in steady
-- use does not keep its list forever.
-- KEYS: current, visits.  ARGV: visit, TTL seconds.  Returns the number of visits.
redis.call('DECR', KEYS[1])
local n = redis.call('RPUSH', KEYS[2], ARGV[1])
if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
return n
