"""Test-only Celery app for the rate-limit benchmark: Celery's own per-worker ``rate_limit``.

A plain Celery app with Celery's defaults (prefetch multiplier 4, early acks), one no-op task
limited with ``rate_limit`` (``RL_RATE``, default ``20/s``) that records when it finished in the
Redis list ``bench:rl:done``. Used only by :mod:`ops.bench.ratelimit_accuracy`, as the baseline.

Example::

    $ REDIS_URL=redis://… celery -A ops.bench.ratelimit_celery_app worker -P threads -c 4
"""

from __future__ import annotations

import os
import time

import redis
from celery import Celery

DONE_KEY = "bench:rl:done"
QUEUE = "rlbase"

app = Celery("rlbase", broker=os.environ["REDIS_URL"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    task_default_queue=QUEUE,
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
)
_client = redis.Redis.from_url(os.environ["REDIS_URL"])


@app.task(name="rl_noop", rate_limit=os.environ.get("RL_RATE", "20/s"))
def rl_noop() -> None:
    """Do nothing; note the finishing time."""
    _client.rpush(DONE_KEY, time.time())
