-- Renew the leases of the deliveries a live worker holds: their score becomes now by the Redis
-- clock (workers/features/leases.py). XX: a delivery acked since the worker listed it stays gone.
-- KEYS: unacked_index.  ARGV: delivery tags.  Returns how many were renewed.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local renewed = 0
for _, tag in ipairs(ARGV) do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now, tag)
end
return renewed
