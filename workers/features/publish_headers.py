"""Headers jobq adds to every message Celery publishes: when it was sent, and its correlation id.

Producers' fast path (producers/fastpublish.py) writes both headers itself; every other
publish goes through Celery's ``apply_async`` (a pipeline, a job a job starts, a retry, the
rate-limit mover), and ``before_task_publish`` stamps them here. ``jobq_sent_at`` gives each
job its wait time; ``jobq_correlation_id`` is inherited from the job publishing, or from
``correlation()`` in the producer (:mod:`workers.correlation`).

Example::

    install(app, settings)      # from workers/app.py
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from celery.signals import before_task_publish

from workers.broker.schedule import current_schedule
from workers.correlation import current_correlation_id
from workers.keys import CORRELATION_HEADER, SENT_HEADER
from workers.settings import Settings


def stamp(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """``before_task_publish`` handler: add the sent time and the correlation id in force."""
    if headers is None:
        return
    # A delayed job is "sent" when it is due: its wait time is then from due to started.
    schedule = current_schedule()
    headers.setdefault(SENT_HEADER, schedule.due_estimate() if schedule else time.time())
    if not headers.get(CORRELATION_HEADER):
        correlation_id = current_correlation_id()
        if correlation_id:
            headers[CORRELATION_HEADER] = correlation_id


def install(app: Celery, settings: Settings) -> None:
    """Stamp every message published in this process."""
    before_task_publish.connect(stamp, weak=False, dispatch_uid="jobq.publish_headers")
