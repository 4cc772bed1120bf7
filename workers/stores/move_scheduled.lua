-- Move delayed jobs whose time has come from the queue's scheduled set onto its lists, in one
-- atomic step: a message is always in the set or in a list, so a mover killed at any point
-- loses nothing and moves nothing twice (workers/stores/scheduled.py).
-- KEYS: the scheduled zset, the queue's priority lists for steps 0, 3, 6, 9, then what the
-- admission gate also counts (admit.lua): the parked zset, the closed flag, the reservations.
-- ARGV: most to move (a batch), the high-water mark or -1 (no gate), the low-water mark.
-- Returns {how many moved, the lists' length after} (the mover's room for parked jobs).
local limit = tonumber(ARGV[1])
local high, low = tonumber(ARGV[2]), tonumber(ARGV[3])
local lists = 0
for i = 2, 5 do lists = lists + redis.call('LLEN', KEYS[i]) end
if high >= 0 then
  -- The room is the gate's, counted as admit.lua counts it and in the same step, so two
  -- movers cannot both fill it and due jobs never push the queue over its mark; while the
  -- gate is closed (producers wait for the low mark) nothing is moved past the low mark.
  local backlog = lists + redis.call('ZCARD', KEYS[6])
  for _, v in ipairs(redis.call('HVALS', KEYS[8])) do backlog = backlog + tonumber(v) end
  if redis.call('EXISTS', KEYS[7]) == 1 and backlog > low then limit = 0 end
  limit = math.min(limit, high - backlog)
end
if limit <= 0 then return {0, lists} end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
for _, message in ipairs(due) do
  -- kombu's Redis transport: priority 0..9 goes to the list of the highest step not above it.
  local ok, decoded = pcall(cjson.decode, message)
  local priority = 0
  if ok and type(decoded) == 'table' and type(decoded.properties) == 'table' then
    priority = tonumber(decoded.properties.priority) or 0
  end
  priority = math.max(0, math.min(9, priority))
  local list = KEYS[2]
  if priority >= 9 then list = KEYS[5] elseif priority >= 6 then list = KEYS[4]
  elseif priority >= 3 then list = KEYS[3] end
  -- Earliest due first: LPUSH to the head, and workers take from the tail, in due order.
  redis.call('LPUSH', list, message)
  redis.call('ZREM', KEYS[1], message)
end
return {#due, lists + #due}
