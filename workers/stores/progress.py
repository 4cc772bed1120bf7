"""A job's progress in Redis: ``jobq:progress:<job id>``, written by the job, read by everyone.

One small JSON string per job, ``{"done", "total", "note", "updated"}``, kept as long as
results (``JOBQ_RESULT_EXPIRES``). It is a key of its own, not only the result backend's
``PROGRESS`` state, because a fire-and-forget job (``ignore_result``) stores no result, and the
final result replaces ``PROGRESS``: this key says how far any job got, while it runs and after.

Example::

    >>> write_progress(get_redis(), "6f1c…", Progress(done=3, total=10, note="pages"), ttl=86400)
    >>> read_progress(["6f1c…"])[0].fraction
    0.3
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from workers.keys import PROGRESS_PREFIX
from workers.stores.client import get_redis
from workers.stores.scripts import LuaScript

STATE = LuaScript(__package__, "progress_state.lua")


def write_progress_state(
    client: Any, result_key: str, job_id: str, value: Progress, ttl: int
) -> bool:
    """Celery's ``PROGRESS`` state (meta: the progress) unless the job's result says it ended.

    Celery's own ``store_result`` would replace a stored ``REVOKED`` or ``FAILURE``; this
    write, which can land after the job's end, must not. True when written.
    """
    meta = {
        "status": "PROGRESS",
        "result": value.to_dict(),
        "traceback": None,
        "children": [],
        "date_done": None,
        "task_id": job_id,
    }
    return bool(STATE(client, keys=[result_key], args=[json.dumps(meta), max(1, ttl)]))


@dataclass(frozen=True)
class Progress:
    """How far a job got: ``done`` of ``total`` (None: unknown), a note, and when (epoch s)."""

    done: float
    total: float | None = None
    note: str = ""
    updated: float = field(default_factory=time.time)

    @property
    def fraction(self) -> float | None:
        """``done / total`` between 0 and 1, or None when the total is unknown."""
        return None if not self.total else min(1.0, self.done / self.total)

    def to_dict(self) -> dict[str, Any]:
        """The stored form, also the ``PROGRESS`` state's meta and the Flower event's fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        return cls(
            done=data["done"],
            total=data.get("total"),
            note=data.get("note") or "",
            updated=data.get("updated") or 0.0,
        )

    def describe(self) -> str:
        """``4200/10000 (42%) note``, or ``4200 note`` without a total (`jobq show`, `jobq top`)."""
        count = f"{_number(self.done)}/{_number(self.total)}" if self.total else _number(self.done)
        if self.fraction is not None:
            count += f" ({self.fraction:.0%})"
        return f"{count} {self.note}".rstrip()


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{int(value)}" if float(value).is_integer() else f"{value:g}"


def write_progress(client: redis.Redis, job_id: str, progress: Progress, *, ttl: int) -> None:
    """Store ``progress`` for ``job_id`` (one ``SET … EX``), replacing the previous value."""
    client.set(PROGRESS_PREFIX + job_id, json.dumps(progress.to_dict()), ex=ttl)


def read_progress(job_ids: Sequence[str]) -> list[Progress | None]:
    """The latest progress of each job (None where it never reported any), in one ``MGET``."""
    if not job_ids:
        return []
    raw = get_redis().mget([PROGRESS_PREFIX + job_id for job_id in job_ids])
    return [None if value is None else Progress.from_dict(json.loads(value)) for value in raw]
