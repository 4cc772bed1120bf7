"""Reading job records: when each job was sent, started and finished, and where it ran.

Workers write one Redis hash per job, ``jobq:job:<id>``, when the job ends
(:mod:`workers.features.job_records`); ``jobq show``, ``jobq status``, the demo summary and the
benchmarks read them here. Wait time is sent → started, run time started → finished.

Example::

    >>> read_records(["0b1f…"])[0]["pool"]
    'io'
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from workers.keys import RECORD_PREFIX
from workers.stores.client import get_redis


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
