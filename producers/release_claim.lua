-- Release an idempotency claim only if it is still ours: after its expiry another submitter may
-- hold it (producers/idempotency.py).  KEYS: the claim.  ARGV: our token.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
