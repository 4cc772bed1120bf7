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
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from celery import Task
from celery.app.task import get_actual_ignore_result
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from kombu.utils.encoding import bytes_to_str

from workers.stores.client import get_redis
from workers.stores.progress import Progress, write_progress, write_progress_state
from workers.throttle import Throttle

logger = logging.getLogger(__name__)

# At most four writes a second per job: a watcher refreshing every second sees fresh values,
# and 10 000 calls a second cost Redis the same as four.
WRITE_INTERVAL_S = 0.25
# After a failed write (Redis away), progress is not written for this long: each attempt can
# block up to the connect timeout, and the job's own work comes first.
QUIET_AFTER_FAILURE_S = 5.0
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
    """One running job's progress: throttles its calls and writes what passes.

    A value held back is written by the next call after the interval, by a one-shot timer when
    no call comes (a job that reports, then works for minutes), or when the body ends.
    """

    task: Task
    job_id: str
    ttl: int
    stores_result: bool
    request: Any
    throttle: Throttle[Progress] = field(
        default_factory=lambda: Throttle[Progress](interval=WRITE_INTERVAL_S)
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _timer: threading.Timer | None = field(default=None, init=False)
    _quiet_until: float = field(default=0.0, init=False)
    _ended: bool = field(default=False, init=False)

    def report(self, value: Progress) -> None:
        with self._lock:
            ready = self.throttle.offer(value)
            if ready is None:
                self._arm_timer()
                return
            self._disarm_timer()  # this write carries the latest value: the timer has none
        self.write(ready, event=True)

    def flush(self) -> None:
        """Write the value held back, if any (the job's body has ended)."""
        with self._lock:
            self._ended = True
            self._disarm_timer()
            pending = self.throttle.drain()
        if pending is not None:
            self.write(pending, event=True)

    def abandon(self) -> None:
        """The body was stopped (cancelled, killed): write nothing more."""
        with self._lock:
            self._ended = True
            self._disarm_timer()
            self.throttle.drain()

    def _arm_timer(self) -> None:
        # threading.Timer is a greenlet on a gevent worker (monkey-patched), a thread in a
        # prefork child; either way it only writes the held-back value, never an event.
        if self._timer is None and not self._ended:
            self._timer = threading.Timer(WRITE_INTERVAL_S, self._trailing)
            self._timer.daemon = True
            self._timer.start()

    def _disarm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _trailing(self) -> None:
        with self._lock:
            self._timer = None
            if self._ended:
                return
            pending = self.throttle.drain()
            if pending is not None:
                self.throttle.mark_written()
        if pending is not None:
            self.write(pending, event=False)

    def write(self, value: Progress, *, event: bool) -> None:
        if time.monotonic() < self._quiet_until:
            return  # Redis failed a moment ago: the job must not wait on it again so soon
        try:
            write_progress(get_redis(), self.job_id, value, ttl=self.ttl)
            if self.stores_result:
                # Celery's custom-state convention; never over a state that says it ended.
                backend = self.task.backend
                key = bytes_to_str(backend.get_key_for_task(self.job_id))
                write_progress_state(backend.client, key, self.job_id, value, self.ttl)
            if event and self.request.hostname:
                self.task.send_event(PROGRESS_EVENT, retry=False, **value.to_dict())
        except (SoftTimeLimitExceeded, Ignore):
            raise  # the job's own limits and control flow, raised wherever it waits
        except Exception as exc:  # progress is advisory: the job must go on
            self._quiet_until = time.monotonic() + QUIET_AFTER_FAILURE_S
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
    except Exception:
        _end(scope, flush=True)
        raise
    except BaseException:
        # GreenletExit (a cancel), SystemExit: the job was stopped; a value written now
        # would land after its REVOKED, so nothing more is written.
        _end(scope, flush=False)
        raise
    else:
        _end(scope, flush=True)
    finally:
        _current.reset(token)


def _end(scope: _Scope, *, flush: bool) -> None:
    if scope.reporter is None:
        return
    if flush:
        # Before the result and the task-succeeded event: the last value reported is
        # stored, and a late progress event never follows the job's end.
        scope.reporter.flush()
    else:
        scope.reporter.abandon()


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
