-- Store a job's result unless a SUCCESS is already stored, and publish it, in one round trip
-- (workers/broker/result_backend.py): Celery's GET, then SET + PUBLISH, made atomic.
-- KEYS: result key.  ARGV: encoded meta, expiry seconds (0 = none).
-- Returns 0 when a SUCCESS is already stored (left as is, as Celery does), 1 when written.
local current = redis.call('GET', KEYS[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' and stored['status'] == 'SUCCESS' then return 0 end
end
local expires = tonumber(ARGV[2])
if expires > 0 then
  redis.call('SETEX', KEYS[1], expires, ARGV[1])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
