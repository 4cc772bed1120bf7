-- Reserve a job's turn under its rate limit: GCRA without burst, every job gets the next turn,
-- 1/rate after the previous one. The clock is Redis's, so worker clocks do not matter.
-- KEYS: schedule, stats.  ARGV: interval (µs), job name.  Returns {wait µs, turn µs}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local turn = tonumber(redis.call('GET', KEYS[1]) or '0')
if turn < now then turn = now end
local following = turn + interval
redis.call('SET', KEYS[1], string.format('%.0f', following), 'PX',
           math.ceil((following - now) / 1000) + 1000)
local wait = turn - now
if wait > 0 then
  redis.call('HINCRBY', KEYS[2], ARGV[2] .. ':waits', 1)
  redis.call('HINCRBYFLOAT', KEYS[2], ARGV[2] .. ':wait_seconds', wait / 1000000)
end
return {string.format('%.0f', wait), string.format('%.0f', turn)}
