"""The delivery limit: a job that keeps killing its process is refused, not redelivered forever.

A job that segfaults, calls ``os._exit`` or is OOM-killed never reaches Celery's failure
handling: in prefork Celery 5.7 re-sends it as a retry (``task_retry_on_worker_lost``, bounded
by ``max_retries``), but on gevent the whole worker dies and the message comes back through the
lease, again and again. So every *repeated* start (a redelivered message or a retry) counts in
Redis, and the count is cleared when the run ends in any way. A count above
``JOBQ_MAX_RETRIES_ON_WORKER_LOST`` means that many runs died without finishing: the job is
failed with :class:`DeliveryLimitExceeded` before it runs, and dead-lettered.
First deliveries write nothing, so the common path costs no Redis round trip.

Example (called by ``JobTask.__call__`` before the job body)::

    check_delivery_limit(task)     # raises DeliveryLimitExceeded on the (N+2)-th start
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.signals import task_postrun

from workers.keys import STARTS_PREFIX
from workers.settings import Settings, get_settings
from workers.stores.client import get_redis

STARTS_TTL = 7 * 86_400


class DeliveryLimitExceeded(RuntimeError):
    """The job was started too many times without finishing (its process kept dying)."""


def check_delivery_limit(task: Task) -> None:
    """Count this start if it is a repeat; refuse it if too many runs died unfinished."""
    request = task.request
    delivery = getattr(request, "delivery_info", None) or {}
    if not (delivery.get("redelivered") or (getattr(request, "retries", 0) or 0) > 0):
        return
    key = STARTS_PREFIX + str(request.id)
    pipe = get_redis().pipeline(transaction=True)
    pipe.incr(key)
    pipe.expire(key, STARTS_TTL)
    starts, _ = pipe.execute()
    limit = get_settings().max_retries_on_worker_lost
    if int(starts) > limit:
        raise DeliveryLimitExceeded(
            f"{task.name}[{request.id}] was started {int(starts)} times after its first delivery "
            f"without finishing (limit {limit}); its process probably dies while running it"
        )


def _clear_starts(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    # The run ended (success, failure or retry): it did not kill its process.
    if task_id and task is not None:
        request = task.request
        delivery = getattr(request, "delivery_info", None) or {}
        if delivery.get("redelivered") or (getattr(request, "retries", 0) or 0) > 0:
            get_redis().delete(STARTS_PREFIX + task_id)


def install(app: Celery, settings: Settings) -> None:
    """Clear a job's start count when its run ends (the check itself runs in JobTask)."""
    task_postrun.connect(_clear_starts, weak=False, dispatch_uid="jobq.delivery_limit")
