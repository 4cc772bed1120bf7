"""Celery's Redis result backend, with each result written in one atomic round trip.

Before writing a result, Celery's key-value backends read the stored one (a GET) so that a
late duplicate can never overwrite a SUCCESS, then write it (SET + PUBLISH in a pipeline): two
round trips per job, and a window between them in which the check can go stale. Here the same
check and write run as one Lua script, so they cost one round trip and cannot interleave with
another worker's write. Everything else (keys, encoding, expiry, pub/sub notification, reading
results) is Celery's ``RedisBackend`` unchanged: any Celery client reads these results.

Selected in workers/app.py with Celery's ``module:Class+url`` form of ``result_backend``.

Example::

    result_backend = "workers.resultstore:AtomicRedisBackend+redis://:pw@127.0.0.1:6379/0"
"""

from __future__ import annotations

from typing import Any

from celery import states
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str

from workers import groupcommit

# KEYS[1] = result key; ARGV = encoded meta, expiry seconds (0 = none). Returns 0 when a
# SUCCESS is already stored (left as is, as Celery does), 1 when written and published.
_STORE = """
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
"""


class AtomicRedisBackend(RedisBackend):
    """``RedisBackend`` whose ``_store_result`` is one Lua call instead of GET, then SET+PUBLISH."""

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        meta = self._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError(
                "value too large for Redis backend", state=state, task_id=task_id
            )
        expires = self.failure_expires if state == states.FAILURE else self.expires
        key = self.get_key_for_task(task_id)
        self.ensure(self._store_atomically, (key, value, int(expires or 0)))
        return result

    def _store_atomically(self, key: bytes | str, value: str | bytes, expires: int) -> None:
        commit = groupcommit.active()
        if commit is not None:
            # gevent worker: sent with this batch's other results, records and acks
            # (workers/groupcommit.py). EVAL, not EVALSHA: a pipeline would first ask the
            # server whether the script exists, one more round trip per batch.
            commit.write(lambda pipe: pipe.eval(_STORE, 1, key, value, expires))
            return
        script = self.__dict__.get("_jobq_store_script")
        if script is None:
            script = self.__dict__["_jobq_store_script"] = self.client.register_script(_STORE)
        script(keys=[key], args=[value, expires])
