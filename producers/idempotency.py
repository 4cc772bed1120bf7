"""Idempotency keys: ``submit(name, key=...)`` enqueues a job at most once per key and window.

Delivery is at least once, and producers retry too (a timeout after Redis accepted the job
looks like a failure). A key makes the *submission* safe to repeat: the job is pushed and
``jobq:idem:<job>:<key>`` set to its id by one Lua script (workers/broker/enqueue_once.py), so
there is no moment when the job is in the queue but the key is not recorded, or the reverse.
Any later submit of the same job with the same key, within ``JOBQ_IDEMPOTENCY_WINDOW`` seconds,
returns a handle on the job already enqueued and sends nothing, whether the first submit
succeeded, failed after Redis applied it (its reply lost), or is retrying right now. Keys are per
job name. The key guards the submission only: a job that runs twice (a lost lease, a retried
crash) must still make its effects idempotent, for example by writing results under its job id.

Example::

    first = submit("fetch_url", url=u, key="import-42")
    again = submit("fetch_url", url=u, key="import-42")
    assert again.id == first.id
"""

from __future__ import annotations

from collections.abc import Callable

from producers.handle import JobHandle
from workers.broker.enqueue_once import enqueue_once
from workers.keys import IDEMPOTENCY_PREFIX
from workers.settings import get_settings
from workers.stores.client import get_redis

# Appended to the stored id of a fire-and-forget job, so a repeat gets a handle that knows it
# has no result to wait for.
NO_RESULT_MARK = "|no-result"


class IdempotencyConflict(RuntimeError):
    """No longer raised: concurrent submits with one key now all return the one job enqueued.

    Kept so that code catching it still imports.
    """


def idempotency_key(job: str, key: str) -> str:
    return f"{IDEMPOTENCY_PREFIX}{job}:{key}"


def submit_once(
    job: str,
    key: str,
    queue: str | None,
    enqueue: Callable[[], JobHandle],
    *,
    no_result: bool = False,
) -> tuple[JobHandle, bool]:
    """Run ``enqueue`` unless ``key`` was used for ``job`` within the window.

    ``enqueue`` must enqueue one job (a pipeline: its first step). Returns ``(handle,
    created)``: ``created`` is False when the job already existed. ``no_result``: the job
    stores no result, which a repeat's handle must know.
    """
    redis_key = idempotency_key(job, key)
    # Known already: no need to pass the admission gate again.
    recorded = get_redis().get(redis_key)
    if recorded is None:
        window = get_settings().idempotency_window
        with enqueue_once(
            redis_key, window=window, suffix=NO_RESULT_MARK if no_result else ""
        ) as once:
            handle = enqueue()
        # Ours is the job in the queue: recorded with its push, or found by our own retry of
        # a push whose reply was lost.
        if once.recorded is None or once.recorded.partition(NO_RESULT_MARK)[0] == handle.id:
            return handle, True
        recorded = once.recorded  # another submit (or an earlier attempt of ours) got in first
    job_id, mark, _ = recorded.partition(NO_RESULT_MARK)
    return JobHandle(id=job_id, name=job, queue=queue, ignore_result=bool(mark)), False
