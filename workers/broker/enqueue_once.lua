-- Enqueue a job and record its idempotency key in one step (workers/broker/enqueue_once.py):
-- a key already recorded means the job is in, so nothing is pushed and its id is returned.
-- KEYS: the idempotency key, the queue list.  ARGV: the value to record (job id), the window
-- in seconds, the message.  Returns {1, value} when pushed, {0, recorded value} when not.
local recorded = redis.call('GET', KEYS[1])
if recorded then return {0, recorded} end
redis.call('LPUSH', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return {1, ARGV[1]}
