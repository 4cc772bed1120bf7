"""Idempotency keys: ``submit(name, key=...)`` enqueues a job at most once per key and window.

Delivery is at least once, and producers retry too (a timeout after Redis accepted the job
looks like a failure). A key makes the *submission* safe to repeat: the first submit with a
key claims ``jobq:idem:<job>:<key>`` in Redis (``SET NX``, a short-lived claim) and enqueues,
then records the job id there for the window; any later
submit of the same job with the same key, within ``JOBQ_IDEMPOTENCY_WINDOW`` seconds, returns a
handle on the job already enqueued and sends nothing. If the first enqueue fails, its claim is
released, so a retry can succeed. Keys are per job name. The key guards the submission only:
a job that runs twice (a lost lease, a retried crash) must still make its effects idempotent,
for example by writing results under its job id.

Example::

    first = submit("fetch_url", url=u, key="import-42")
    again = submit("fetch_url", url=u, key="import-42")
    assert again.id == first.id
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from producers.handle import JobHandle
from workers.keys import IDEMPOTENCY_PREFIX
from workers.settings import get_settings
from workers.stores.client import get_redis
from workers.stores.scripts import LuaScript

PENDING = "pending:"
# Appended to the stored id of a fire-and-forget job, so a repeat gets a handle that knows it
# has no result to wait for.
NO_RESULT_MARK = "|no-result"
# How long a second submitter waits for the first one's enqueue to finish.
PENDING_WAIT_S = 10.0
# A claim outlives the longest a live first submitter can take (waiting at the admission gate
# included), and no more.
CLAIM_MARGIN_S = 30

RELEASE = LuaScript(__package__, "release_claim.lua")


class IdempotencyConflict(RuntimeError):
    """Another submitter holds the key but did not finish enqueueing in time."""


def idempotency_key(job: str, key: str) -> str:
    return f"{IDEMPOTENCY_PREFIX}{job}:{key}"


def submit_once(
    job: str, key: str, queue: str | None, enqueue: Callable[[], JobHandle]
) -> tuple[JobHandle, bool]:
    """Run ``enqueue`` unless ``key`` was used for ``job`` within the window.

    Returns ``(handle, created)``: ``created`` is False when the job already existed.
    """
    client = get_redis()
    redis_key = idempotency_key(job, key)
    settings = get_settings()
    window = settings.idempotency_window
    # Admission, publish and release may each wait out a Redis outage (producers/outage.py).
    claim_ttl = int(settings.gate_timeout + 3 * settings.producer_retry_for) + CLAIM_MARGIN_S
    deadline = time.monotonic() + PENDING_WAIT_S
    while True:
        token = PENDING + uuid.uuid4().hex
        # The claim is short-lived: a submitter that dies between claiming and enqueueing must
        # not block the key for the whole window.
        if client.set(redis_key, token, nx=True, ex=claim_ttl):
            try:
                handle = enqueue()
            except BaseException:
                RELEASE(client, keys=[redis_key], args=[token])
                raise
            # The window runs from this (the first) successful submit.
            mark = NO_RESULT_MARK if handle.ignore_result else ""
            client.set(redis_key, handle.id + mark, ex=window)
            return handle, True
        existing = client.get(redis_key)
        if existing and not existing.startswith(PENDING):
            job_id, mark, _ = existing.partition(NO_RESULT_MARK)
            return JobHandle(id=job_id, name=job, queue=queue, ignore_result=bool(mark)), False
        if time.monotonic() > deadline:
            raise IdempotencyConflict(
                f"key {key!r} of {job} is being submitted by someone else; try again"
            )
        time.sleep(0.05)  # the first submitter is enqueueing, or its claim just expired
