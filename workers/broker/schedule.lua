-- Store delayed jobs' messages in their queue's scheduled set until they are due, optionally
-- recording an idempotency key in the same step (workers/broker/schedule.py).
-- KEYS: the scheduled zset, then (optional) the idempotency key.
-- ARGV: '1' when ARGV[2] is a delay in seconds (from Redis's clock), '0' when it is an epoch
-- time; the value recorded under the key (job id); the key's window in seconds; the messages…
-- Returns {1, due} when stored, {0, recorded value} when the key was already recorded.
local due = tonumber(ARGV[2])
-- Redis's clock, as the mover's: producer and worker clocks do not matter.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
if ARGV[1] == '1' then due = now + due end
if KEYS[2] then
  local recorded = redis.call('GET', KEYS[2])
  if recorded then return {0, recorded} end
end
for i = 5, #ARGV do
  redis.call('ZADD', KEYS[1], due, ARGV[i])
end
-- The key's window starts when the job is due, not now: a job due in two days submitted again
-- tomorrow with its key is the same job, as the window promises.
local window = tonumber(ARGV[4]) + math.max(0, math.ceil(due - now))
if KEYS[2] then redis.call('SET', KEYS[2], ARGV[3], 'EX', window) end
return {1, tostring(due)}
