"""Job records: when each job was sent, started and finished, and where it ran.

Every publish (producer or worker, e.g. the next step of a pipeline) stamps the message with
the time it was sent; the worker writes one Redis hash per job, ``jobq:job:<id>``, when the job
ends. Wait time (sent → started) and run time (started → finished) come from these records,
which is what the demo summary and ``jobq status`` report. One pipelined write per job, expiring
with the results.

Example::

    >>> read_records(["0b1f…"])[0]["pool"]
    'io'
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import Any

from celery import Task
from celery.signals import before_task_publish, task_postrun, task_prerun

from workers import groupcommit, jobstats
from workers.logcontext import correlation_of
from workers.redis_client import get_redis
from workers.settings import get_settings

SENT_HEADER = "jobq_sent_at"
RECORD_PREFIX = "jobq:job:"

log = logging.getLogger(__name__)
_started: dict[str, float] = {}


@before_task_publish.connect
def _stamp_sent_time(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers.setdefault(SENT_HEADER, time.time())


@task_prerun.connect
def _note_start(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _started[task_id] = time.time()


@task_postrun.connect
def _write_record(
    task_id: str | None = None, task: Task | None = None, state: str | None = None, **_: Any
) -> None:
    if not task_id or task is None:
        return
    started = _started.pop(task_id, None)
    request = task.request
    delivery = getattr(request, "delivery_info", None) or {}
    record = {
        "name": task.name,
        "queue": delivery.get("routing_key") or getattr(task, "queue", "") or "",
        "state": state or "",
        "worker": getattr(request, "hostname", "") or "",
        "pid": os.getpid(),
        "sent_at": getattr(request, SENT_HEADER, None) or "",
        "started_at": started or "",
        "finished_at": time.time(),
        "retries": getattr(request, "retries", 0) or 0,
        "parent_id": getattr(request, "parent_id", None) or "",
        "root_id": getattr(request, "root_id", None) or "",
        "correlation_id": correlation_of(request),
    }
    key = RECORD_PREFIX + task_id
    expires = get_settings().result_expires

    def write(pipe: Any) -> None:
        pipe.hset(key, mapping=record)
        pipe.expire(key, expires)
        # Histograms, counters and the recent window for `jobq top` and `jobq exporter`.
        jobstats.add_job(pipe, record)

    commit = groupcommit.active()
    if commit is not None:
        # gevent worker: in the same transaction as this job's result (workers/groupcommit.py),
        # so whoever sees the result also finds the record.
        commit.write(write)
        return
    try:
        pipe = get_redis().pipeline(transaction=False)
        write(pipe)
        pipe.execute()
    except Exception:  # a missing record must never fail the job that already ran
        log.warning("could not write the job record for %s", task_id, exc_info=True)


def read_records(job_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The records of these jobs, in order; ``{}`` for a job that has not finished yet."""
    ids = list(job_ids)
    pipe = get_redis().pipeline(transaction=False)
    for job_id in ids:
        pipe.hgetall(RECORD_PREFIX + job_id)
    return [_typed(raw) for raw in pipe.execute()]


def _typed(raw: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = dict(raw)
    for field in ("sent_at", "started_at", "finished_at"):
        record[field] = float(raw[field]) if raw.get(field) else None
    for field in ("pid", "retries"):
        if raw.get(field):
            record[field] = int(raw[field])
    if record.get("sent_at") and record.get("started_at"):
        record["wait_s"] = max(0.0, record["started_at"] - record["sent_at"])
    if record.get("started_at") and record.get("finished_at"):
        record["run_s"] = record["finished_at"] - record["started_at"]
    return record
