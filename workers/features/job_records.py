"""Writing job records: one Redis hash per job, ``jobq:job:<id>``, when the job ends.

The record says when the job was sent (the ``jobq_sent_at`` header every publish carries),
started and finished, in which worker, process and state; the job's statistics
(:mod:`workers.stores.job_stats`) go in the same write. One pipelined write per job, expiring
with the results; on gevent workers it joins the group commit, in the same transaction as the
job's result. Reading records is :mod:`workers.stores.job_records`.

Example::

    install(app, settings)      # from workers/app.py: connects task_prerun/task_postrun
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery import Celery, Task
from celery.signals import task_postrun, task_prerun

from workers import correlation
from workers.features import group_commit
from workers.features.cancellation import is_cancelled_here
from workers.keys import QUEUE_ATTRIBUTE, RECORD_PREFIX, SENT_HEADER
from workers.settings import Settings, get_settings
from workers.stores import job_stats
from workers.stores.client import get_redis

log = logging.getLogger(__name__)
_started: dict[str, float] = {}


def _note_start(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.time()


def _write_record(
    task_id: str | None = None, task: Task | None = None, state: str | None = None, **_: Any
) -> None:
    if not task_id or task is None:
        return
    if state in (None, "IGNORED") and is_cancelled_here(task_id):
        _started.pop(task_id, None)
        return  # stopped by a cancel: its record is the cancel's (cancellation.record_revoked)
    started = _started.pop(task_id, None)
    request = task.request
    delivery = getattr(request, "delivery_info", None) or {}
    record = {
        "name": task.name,
        "queue": delivery.get("routing_key") or getattr(task, QUEUE_ATTRIBUTE, "") or "",
        "state": state or "",
        "worker": getattr(request, "hostname", "") or "",
        "pid": os.getpid(),
        "sent_at": getattr(request, SENT_HEADER, None) or "",
        "started_at": started or "",
        "finished_at": time.time(),
        "retries": getattr(request, "retries", 0) or 0,
        "parent_id": getattr(request, "parent_id", None) or "",
        "root_id": getattr(request, "root_id", None) or "",
        "correlation_id": correlation.correlation_of(request),
    }
    key = RECORD_PREFIX + task_id
    expires = get_settings().result_expires

    def write(pipe: Any) -> None:
        pipe.hset(key, mapping=record)
        pipe.expire(key, expires)
        # Histograms, counters and the recent window for `jobq top` and `jobq exporter`.
        job_stats.add_job(pipe, record)

    commit = group_commit.active()
    if commit is not None:
        # gevent worker: in the same transaction as this job's result (group_commit.py),
        # so whoever sees the result also finds the record.
        commit.write(write, f"job record {task_id}")
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        write(pipe)
        pipe.execute()
    except Exception:  # a missing record must never fail the job that already ran
        log.warning("could not write the job record for %s", task_id, exc_info=True)


def install(app: Celery, settings: Settings) -> None:
    """Write a record for every job ``app``'s workers run."""
    task_prerun.connect(_note_start, weak=False, dispatch_uid="jobq.job_records.start")
    task_postrun.connect(_write_record, weak=False, dispatch_uid="jobq.job_records.write")
