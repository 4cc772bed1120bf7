"""``JobTask``: the Celery base task of every jobq job; what runs between a delivery and the body.

Before a job's body runs, the worker checks, in this order: the delivery limit (a job that keeps
killing its process is refused), the arguments against the job's schema, positional ones (a
pipeline step's input) included (a message may come from any Celery client, so the worker does
not trust that they were checked; refused before they take a turn of the rate limit), the
cluster-wide rate limit (wait for the job's turn, or park it in Redis), and, on gevent, the soft
time limit and the watchdog's hard limit.

Example::

    @shared_task(base=JobTask, schema=ArgumentSchema.from_function(f))
    def f(url: str) -> dict: ...
"""

from __future__ import annotations

from typing import Any

import redis
from celery import Task

from workers.features.cancellation import refuse_cancelled
from workers.features.delivery_limit import check_delivery_limit
from workers.features.rate_limits import wait_for_turn
from workers.features.time_limits import soft_time_limit
from workers.progress import reporting
from workers.registry.request import LeftToLease
from workers.registry.schema import ArgumentSchema


class JobTask(Task):
    """Base task of every jobq job: checks the delivery, its turn and its arguments, then runs."""

    schema: ArgumentSchema
    # A delivery whose end cannot be recorded is left to its lease, not acknowledged.
    Request = "workers.registry.request:JobRequest"
    typing = False  # validation below replaces Celery's signature check, with better errors
    # A job whose process died is re-sent at once (task_retry_on_worker_lost uses this delay;
    # Celery's default of 180 s would hold a SIGKILLed child's job back for three minutes).
    # Declared transient errors compute their own backoff (workers/registry/retrying.py).
    default_retry_delay = 0
    # Fire-and-forget jobs (ignore_result) still store a failure and its traceback: it costs a
    # write only when a job fails, and `jobq show ID` can then say why.
    store_errors_even_if_ignored = True

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # A job cancelled while it waited in this worker does not start (an in-memory check).
        refuse_cancelled(self)
        try:
            # A job whose runs keep killing their process is refused here.
            check_delivery_limit(self)
            # Positional arguments come only from a chain handing over the previous result;
            # they are checked like the others. The rate key is computed from checked arguments.
            args, kwargs = self.schema.validate_call(args, kwargs)
            # Cluster-wide rate limit: wait for this job's turn, or park it in Redis until then.
            wait_for_turn(self, kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Redis away for a moment is not the job's failure: it has not run; its delivery
            # stays unacknowledged and comes back with its lease (workers/registry/request.py).
            raise LeftToLease(f"Redis unreachable before the job started: {exc}") from exc
        # gevent has no soft time limit of its own; this adds one. `progress()` calls in the
        # body report for this job; the last one held back is written when the body ends.
        with soft_time_limit(self), reporting(self):
            return super().__call__(*args, **kwargs)
