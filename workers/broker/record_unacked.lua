-- kombu's QoS.append on the stock fetch path: record a delivery as unacked, its lease starting
-- now by the Redis clock (workers/broker/lease_clock.py), so every host measures it alike.
-- KEYS: unacked_index, unacked.  ARGV: delivery tag, unacked record (kombu's JSON).
local t = redis.call('TIME')
redis.call('ZADD', KEYS[1], tonumber(t[1]) + tonumber(t[2]) / 1000000, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
