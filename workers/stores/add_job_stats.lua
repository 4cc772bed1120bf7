-- All of one finished job's statistics updates in one call (workers/stores/job_stats.py).
-- KEYS: totals hash, wait histogram, run histogram, recent list of the job's queue.
-- ARGV: field prefix "job|pool|", state, wait bucket label ('' = unknown), wait seconds,
--       run bucket label ('' = unknown), run seconds, recent entry ('' = none),
--       recent list length, recent list TTL seconds.
redis.call('HINCRBY', KEYS[1], ARGV[1] .. ARGV[2], 1)
for i = 0, 1 do
  local label, value = ARGV[3 + 2 * i], ARGV[4 + 2 * i]
  if label ~= '' then
    redis.call('HINCRBY', KEYS[2 + i], ARGV[1] .. label, 1)
    redis.call('HINCRBYFLOAT', KEYS[2 + i], ARGV[1] .. 'sum', value)
    redis.call('HINCRBY', KEYS[2 + i], ARGV[1] .. 'count', 1)
  end
end
if ARGV[7] ~= '' then
  redis.call('LPUSH', KEYS[4], ARGV[7])
  redis.call('LTRIM', KEYS[4], 0, tonumber(ARGV[8]) - 1)
  redis.call('EXPIRE', KEYS[4], tonumber(ARGV[9]))
end
