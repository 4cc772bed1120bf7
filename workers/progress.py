"""``progress(done, total=None, note="")``: a running job says how far it got.

Call it from a job's body, in either pool, as often as is convenient: every item of a loop is
fine. The first call is written at once; after that at most one value per
:data:`WRITE_INTERVAL_S` reaches Redis, the latest one: a value held back is written by the
first call after the interval, or when the job's body returns or raises, so the stored progress
is always the last one reported. Each write

* sets ``jobq:progress:<id>`` (:mod:`workers.stores.progress`), which ``handle.progress()``,
  ``jobq show`` and ``jobq top`` read, fire-and-forget jobs included;
* stores Celery's custom state ``PROGRESS`` with the same meta in the result backend, unless the
  job stores no result: ``AsyncResult(id).state == "PROGRESS"`` and ``.info`` is the meta;
* sends a ``task-progress`` event: Celery's event state (and so Flower) shows the task as
  ``PROGRESS`` with ``done``, ``total`` and ``note``.

Progress is advisory: a write that fails (Redis away for a moment) is logged and the job carries
on; the value stays pending and goes with the next write.

Outside a job (a job function called directly, in a unit test or a script) the arguments are
still checked, but nothing is written: ``progress`` returns False, so job functions stay plain
callable functions.

Example::

    from jobq import io_job, progress

    @io_job
    def import_rows(url: str) -> int:
        rows = fetch_rows(url)
        for done, row in enumerate(rows, 1):
            save(row)
            progress(done, len(rows), note=f"row {row.id}")
        return len(rows)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from celery import Task
from celery.app.task import get_actual_ignore_result

from workers.stores.client import get_redis
from workers.stores.progress import Progress, write_progress
from workers.throttle import Throttle

logger = logging.getLogger(__name__)

# At most four writes a second per job: a watcher refreshing every second sees fresh values,
# and 10 000 calls a second cost Redis the same as four.
WRITE_INTERVAL_S = 0.25
MAX_NOTE_CHARS = 200
PROGRESS_STATE = "PROGRESS"
PROGRESS_EVENT = "task-progress"


class InvalidProgress(ValueError):
    """``progress`` was called with arguments that do not describe progress."""


def check_progress(done: Any, total: Any = None, note: Any = "") -> Progress:
    """The :class:`Progress` these arguments describe; :class:`InvalidProgress` says what is wrong.

    >>> check_progress(3, 10, "pages").describe()
    '3/10 (30%) pages'
    """

    def number(name: str, value: Any) -> float:
        # bool is an int to Python, never a count to a reader.
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise InvalidProgress(f"progress {name} must be a finite number, not {value!r}")
        if value < 0:
            raise InvalidProgress(f"progress {name} must not be negative, got {value!r}")
        return value  # type: ignore[return-value]

    done = number("done", done)
    if total is not None:
        total = number("total", total)
        if total == 0:
            raise InvalidProgress("progress total must be positive (or None when unknown)")
        if done > total:
            raise InvalidProgress(f"progress done ({done!r}) is more than total ({total!r})")
    if not isinstance(note, str):
        raise InvalidProgress(f"progress note must be a string, not {type(note).__name__}")
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidProgress(
            f"progress note is {len(note)} characters; at most {MAX_NOTE_CHARS} are kept"
        )
    return Progress(done=done, total=total, note=note)


@dataclass
class Reporter:
    """One running job's progress: throttles its calls and writes what passes."""

    task: Task
    job_id: str
    ttl: int
    stores_result: bool
    request: Any
    throttle: Throttle[Progress] = field(
        default_factory=lambda: Throttle[Progress](interval=WRITE_INTERVAL_S)
    )

    def report(self, value: Progress) -> None:
        ready = self.throttle.offer(value)
        if ready is not None:
            self.write(ready)

    def flush(self) -> None:
        """Write the value held back, if any (the job's body has ended)."""
        pending = self.throttle.drain()
        if pending is not None:
            self.write(pending)

    def write(self, value: Progress) -> None:
        meta = value.to_dict()
        try:
            write_progress(get_redis(), self.job_id, value, ttl=self.ttl)
            if self.stores_result:
                # Celery's custom-state convention; the final result replaces it.
                self.task.backend.store_result(
                    self.job_id, meta, PROGRESS_STATE, request=self.request
                )
            if self.request.hostname:
                self.task.send_event(PROGRESS_EVENT, retry=False, **meta)
        except Exception as exc:  # progress is advisory: the job must go on
            logger.warning("progress of job %s not written: %s", self.job_id, exc)


class _Scope:
    """The running job of one context, and its reporter once it first reports."""

    __slots__ = ("reporter", "task")

    def __init__(self, task: Task) -> None:
        self.task = task
        self.reporter: Reporter | None = None

    def get_reporter(self) -> Reporter:
        if self.reporter is None:
            task, request = self.task, self.task.request
            self.reporter = Reporter(
                task=task,
                job_id=request.id,
                ttl=int(task.app.conf.result_expires or 86_400),
                stores_result=not get_actual_ignore_result(task, request),
                request=request,
            )
        return self.reporter


_current: ContextVar[_Scope | None] = ContextVar("jobq_progress_scope", default=None)


@contextmanager
def reporting(task: Task) -> Iterator[None]:
    """Around a job's body (``JobTask.__call__``): ``progress`` calls in it report for this job.

    A context variable, not a global: each greenlet of a gevent worker has its own context, so
    concurrent jobs in one process each report for themselves. A job that never reports costs
    one small object and no Redis round trip: the reporter is made at its first report.
    """
    request = task.request
    if not request.id or request.is_eager:
        yield
        return
    scope = _Scope(task)
    token = _current.set(scope)
    try:
        yield
    finally:
        _current.reset(token)
        if scope.reporter is not None:
            # Before the result and the task-succeeded event: the last value reported is
            # stored, and a late progress event never follows the job's end.
            scope.reporter.flush()


def progress(done: float, total: float | None = None, note: str = "") -> bool:
    """Report that the running job has done ``done`` of ``total`` (None: unknown), with a note.

    Returns True inside a job (the value is recorded, throttled), False outside one (nothing
    is written). Raises :class:`InvalidProgress` for a negative, non-finite or non-numeric
    count, ``done > total``, or a note over ``MAX_NOTE_CHARS`` characters.
    """
    value = check_progress(done, total, note)
    scope = _current.get()
    if scope is None:
        return False
    scope.get_reporter().report(value)
    return True
