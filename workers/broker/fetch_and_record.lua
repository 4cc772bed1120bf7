-- Record the message BRPOP returned as unacked and pop up to N more ready messages, recording
-- each in the same atomic step (workers/broker/batched.py).
-- KEYS: unacked_index, unacked, then the queue lists in BRPOP order.
-- ARGV: (unused: leases start at the Redis clock, workers/broker/lease_clock.py), how many more
-- to pop, the BRPOP'd message's tag and its unacked record ('' = none).
-- Returns a flat list: key number (1-based, among the queue keys), item, tag ('' = unrecorded).
-- The unacked record is kombu's: JSON [envelope, exchange, routing_key], built by
-- concatenation so the envelope is stored byte for byte as it was queued.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('HSET', KEYS[2], ARGV[3], ARGV[4])
end
local out = {}
local want = tonumber(ARGV[2])
local k = 3
while want > 0 and k <= #KEYS do
  local item = redis.call('RPOP', KEYS[k])
  if item then
    local tag = ''
    local ok, msg = pcall(cjson.decode, item)
    if ok and type(msg) == 'table' and type(msg.properties) == 'table' then
      local props = msg.properties
      local info = props.delivery_info
      if type(props.delivery_tag) == 'string' and type(info) == 'table'
          and type(info.exchange) == 'string' and type(info.routing_key) == 'string' then
        tag = props.delivery_tag
        redis.call('ZADD', KEYS[1], now, tag)
        redis.call('HSET', KEYS[2], tag, '[' .. item .. ',' .. cjson.encode(info.exchange)
          .. ',' .. cjson.encode(info.routing_key) .. ']')
      end
    end
    out[#out + 1] = k - 2
    out[#out + 1] = item
    out[#out + 1] = tag
    want = want - 1
  else
    k = k + 1
  end
end
return out
