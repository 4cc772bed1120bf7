-- Store one dead letter and, past the cap, drop the oldest (workers/stores/dead_letters.py).
-- Drops in chunks of 1 000: Lua's unpack has a limit.
-- KEYS: data hash, index zset.  ARGV: id, entry JSON, time, cap (0 = none).
-- Returns how many old entries were dropped.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
local cap = tonumber(ARGV[4])
if cap <= 0 then return 0 end
local excess = redis.call('ZCARD', KEYS[2]) - cap
local dropped = 0
while excess > 0 do
  local oldest = redis.call('ZRANGE', KEYS[2], 0, math.min(excess, 1000) - 1)
  redis.call('HDEL', KEYS[1], unpack(oldest))
  redis.call('ZREM', KEYS[2], unpack(oldest))
  dropped = dropped + #oldest
  excess = excess - #oldest
end
return dropped
