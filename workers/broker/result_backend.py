"""Celery's Redis result backend, with each result written in one atomic round trip.

Before writing a result, Celery's key-value backends read the stored one (a GET) so that a
late duplicate can never overwrite a SUCCESS, then write it (SET + PUBLISH in a pipeline): two
round trips per job, and a window between them in which the check can go stale. Here the same
check and write run as one Lua script, so they cost one round trip and cannot interleave with
another worker's write. Everything else (keys, encoding, expiry, pub/sub notification, reading
results) is Celery's ``RedisBackend`` unchanged: any Celery client reads these results.

Selected in workers/app.py with Celery's ``module:Class+url`` form of ``result_backend`` when
``JOBQ_FAST_PATHS`` is on: it overrides the backend's private ``_store_result``. With the switch
off, workers use Celery's ``RedisBackend`` as it is.

Example::

    result_backend = "workers.broker.result_backend:AtomicRedisBackend+redis://:pw@127.0.0.1:6379/0"
"""

from __future__ import annotations

from typing import Any

from celery import states
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str

from workers.features import group_commit
from workers.stores.scripts import LuaScript

STORE = LuaScript(__package__, "store_result.lua")


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
        commit = group_commit.active()
        if commit is not None:
            # gevent worker: sent with this batch's other results, records and acks
            # (workers/features/group_commit.py). EVAL, not EVALSHA: a pipeline would first ask the
            # server whether the script exists, one more round trip per batch.
            commit.write(
                lambda pipe: STORE.queue(pipe, keys=[key], args=[value, expires]),
                f"result {bytes_to_str(key)}",
            )
            return
        STORE(self.client, keys=[key], args=[value, expires])
