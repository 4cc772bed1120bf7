-- Reserve a job's turn under its rate limit: GCRA without burst, every job gets the next turn,
-- 1/rate after the previous one. The clock is Redis's, so worker clocks do not matter.
-- A parked job coming back takes the turn it reserved when it was parked (KEYS[3], deleted
-- here so it is used once), unless that turn passed more than the grace ago: a job that comes
-- back late (its pool was paused, its queue backed up) takes a new turn, so late jobs do not
-- all run at once.
-- KEYS: schedule, stats, reserved turn.  ARGV: interval (µs), job name, grace (µs).
-- Returns {wait µs, turn µs}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local reserved = tonumber(redis.call('GET', KEYS[3]) or '-1')
if reserved >= 0 then
  redis.call('DEL', KEYS[3])
  if reserved >= now - tonumber(ARGV[3]) then
    local wait = reserved - now
    if wait < 0 then wait = 0 end
    return {string.format('%.0f', wait), string.format('%.0f', reserved)}
  end
end
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
