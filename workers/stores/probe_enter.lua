-- Enter a probe: INCR the jobs inside and raise the peak in one step, so two jobs entering
-- together cannot both miss the maximum.
-- KEYS: current, peak.  ARGV: TTL seconds.  Returns the jobs inside now.
local current = redis.call('INCR', KEYS[1])
local peak = tonumber(redis.call('GET', KEYS[2]) or '0')
if current > peak then redis.call('SET', KEYS[2], current) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[1])
return current
