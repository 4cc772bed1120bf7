-- Store Celery's PROGRESS state for a running job unless its result already says how it ended
-- (workers/stores/progress.py). A progress write that lands after the job's end (a cancelled
-- job's last value, a late duplicate run) must never hide SUCCESS, FAILURE or REVOKED.
-- KEYS: the result key.  ARGV: encoded meta, expiry seconds.
-- Returns 1 when written, 0 when the job had already ended.
local current = redis.call('GET', KEYS[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' then
    local status = stored['status']
    if status == 'SUCCESS' or status == 'FAILURE' or status == 'REVOKED' then return 0 end
  end
end
redis.call('SETEX', KEYS[1], tonumber(ARGV[2]), ARGV[1])
return 1
