-- Take up to N ready messages from the queue lists and record each as unacked, in one atomic
-- step (workers/broker/take.py): a message is in its queue or in ``unacked``, never in neither.
-- KEYS: unacked_index, unacked, then the queue lists in BRPOP order.
-- ARGV: (unused: leases start at the Redis clock, workers/broker/lease_clock.py), how many to
-- take, one character per queue list: '1' record its messages, '0' not (consumers with no_ack
-- never acknowledge), then (optional) the cancel key prefix, the job record prefix, the record's
-- expiry in seconds: a message whose job has a cancel key is popped and not returned, its record
-- written as REVOKED with who cancelled it and when (workers/stores/cancels.py); at most 1000
-- such drops per call (then it returns what it has), so a queue of cancelled jobs cannot hold
-- Redis for long.
-- Returns a flat list: key number (1-based, among the queue keys), item, tag ('' = unrecorded).
-- The unacked record is kombu's: JSON [envelope, exchange, routing_key], built by
-- concatenation so the envelope is stored byte for byte as it was queued.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local out = {}
local want = tonumber(ARGV[2])
local cancels = ARGV[4] or ''
local drops = 1000

-- The job's cancel, if any: the message is dropped and its record says it was cancelled.
local function dropped(msg, info)
  local headers = msg.headers
  if cancels == '' or type(headers) ~= 'table' then
    return false
  end
  local id = headers.id
  if type(id) ~= 'string' then
    return false
  end
  local raw = redis.call('GET', cancels .. id)
  if not raw then
    return false
  end
  local ok, c = pcall(cjson.decode, raw)
  if not ok or type(c) ~= 'table' then
    c = {}
  end
  local record = ARGV[5] .. id
  redis.call('HSET', record, 'name', tostring(headers.task or ''), 'queue', info.routing_key,
    'state', 'REVOKED', 'finished_at', string.format('%.6f', now),
    'sent_at', tostring(headers.jobq_sent_at or ''),
    'cancelled_by', tostring(c.who or '?'), 'cancelled_at', tostring(c.when or ''))
  redis.call('EXPIRE', record, tonumber(ARGV[6]))
  drops = drops - 1
  return true
end

local k = 3
-- Past the drop budget, stop: the next take goes on (a cancelled job must not be taken).
while want > 0 and k <= #KEYS and drops > 0 do
  -- Read, record, then pop: on a full Redis the first write, ZADD, is refused before anything
  -- was popped (RPOP is allowed there and would have been first).
  local item = redis.call('LINDEX', KEYS[k], -1)
  if item then
    local tag = ''
    local record = string.sub(ARGV[3], k - 2, k - 2) == '1'
    local ok, msg = pcall(cjson.decode, item)
    if record and ok and type(msg) == 'table' and type(msg.properties) == 'table' then
      local props = msg.properties
      local info = props.delivery_info
      if type(props.delivery_tag) == 'string' and type(info) == 'table'
          and type(info.exchange) == 'string' and type(info.routing_key) == 'string' then
        if dropped(msg, info) then
          tag = nil
        else
          tag = props.delivery_tag
          redis.call('ZADD', KEYS[1], now, tag)
          redis.call('HSET', KEYS[2], tag, '[' .. item .. ',' .. cjson.encode(info.exchange)
            .. ',' .. cjson.encode(info.routing_key) .. ']')
        end
      end
    end
    redis.call('RPOP', KEYS[k])
    if tag then
      out[#out + 1] = k - 2
      out[#out + 1] = item
      out[#out + 1] = tag
      want = want - 1
    end
  else
    k = k + 1
  end
end
return out
