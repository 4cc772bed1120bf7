"""Time limits on the gevent pool: the soft limit gevent lacks, and a hard limit for CPU loops.

Prefork has both limits natively (``--soft-time-limit`` raises ``SoftTimeLimitExceeded`` in the
job; ``--time-limit`` kills the child). Celery's gevent pool has only the hard limit, as a
``gevent.Timeout`` that fires only where the job yields to the hub; a job that computes without
yielding is never stopped, and blocks every other greenlet meanwhile. This module fills both
gaps, for jobs running on gevent only:

* **Soft limit.** The job body runs under ``gevent.Timeout(soft, SoftTimeLimitExceeded())``, so
  the job can catch ``SoftTimeLimitExceeded`` and clean up, exactly as on prefork.
  ``JOBQ_IO_SOFT_TIME_LIMIT`` (or the job's ``soft_time_limit``) sets it.
* **Hard limit for non-yielding code.** A watchdog OS thread (not a greenlet, so it runs while
  the hub is blocked) notices a job past its hard limit and signals the process (SIGALRM); the
  signal handler runs in the main thread, i.e. inside the blocking job, and raises
  ``TimeLimitExceeded`` there, unless the running greenlet is not that job. Pure-Python loops
  are stopped within about a second of the limit; a single long C call (one huge regex) is not
  interruptible, and a job that swallows every ``Exception`` can ignore it.

The watchdog is the :class:`Watchdog` worker bootstep: it starts and stops with the worker.

Example::

    with soft_time_limit(task):     # used by JobTask.__call__; a no-op outside gevent
        task.run(**kwargs)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

from celery import Celery, Task, bootsteps
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import worker_shutdown

from workers.pools import is_gevent_pool, on_gevent, os_sleep, start_os_thread
from workers.settings import Settings, get_settings

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL = 0.5
_deadlines: dict[Any, tuple[float, float]] = {}  # greenlet -> (monotonic deadline, limit)


def _limits(task: Task) -> tuple[float | None, float | None]:
    """(hard, soft) for this run: the message's, else the task's, else the I/O pool settings."""
    settings = get_settings()
    hard, soft = (getattr(task.request, "timelimit", None) or (None, None))[:2]
    hard = hard or task.time_limit or settings.io_time_limit
    soft = soft or task.soft_time_limit or settings.io_soft_time_limit
    if soft is not None and hard is not None and soft >= hard:
        soft = None  # a soft limit at or after the hard one would never be seen
    return hard, soft


@contextlib.contextmanager
def soft_time_limit(task: Task) -> Iterator[None]:
    """Run a job body under the gevent soft limit and the CPU-loop watchdog (gevent only)."""
    if not on_gevent():
        yield
        return
    import gevent

    hard, soft = _limits(task)
    current = gevent.getcurrent()
    if hard:
        _deadlines[current] = (time.monotonic() + hard, hard)
    try:
        if soft:
            with gevent.Timeout(soft, SoftTimeLimitExceeded(f"soft time limit ({soft}s) exceeded")):
                yield
        else:
            yield
    finally:
        _deadlines.pop(current, None)


def _raise_in_overdue_job(signum: int, frame: Any) -> None:
    import gevent

    current = gevent.getcurrent()
    entry = _deadlines.get(current)
    if entry is not None and entry[0] <= time.monotonic():
        del _deadlines[current]
        raise TimeLimitExceeded(entry[1])


# The watchdog thread runs while its flag holds True. A plain bool in a list, not an Event: the
# thread is an OS thread outside gevent, and gevent patches threading.Event into a greenlet one.
_running: list[list[bool]] = []


class Watchdog(bootsteps.StartStopStep):
    """Worker bootstep: on the gevent pool, an OS thread that stops jobs blocking the hub.

    It wakes every :data:`WATCHDOG_INTERVAL` seconds. A cooperative job is stopped by the pool's
    own ``gevent.Timeout`` at its deadline; one still listed after that is blocking the hub, and
    SIGALRM makes the handler (in the main thread, so inside that job) raise there.

    It must outlive the pool: on a warm shutdown the pool waits for its running jobs, and a job
    that blocks the hub then must still be stopped at its hard limit. Steps stop in reverse
    order, before the pool has drained, so the thread ends on ``worker_shutdown`` instead,
    which Celery sends after the pool has joined (:func:`install`).
    """

    requires = ("celery.worker.components:Pool",)

    def start(self, parent: Any) -> None:
        if not is_gevent_pool(parent.pool) or _running:
            return
        signal.signal(signal.SIGALRM, _raise_in_overdue_job)
        running = [True]
        _running.append(running)

        def watch() -> None:
            while running[0]:
                os_sleep(WATCHDOG_INTERVAL)
                now = time.monotonic()
                if running[0] and any(d <= now for d, _ in list(_deadlines.values())):
                    os.kill(os.getpid(), signal.SIGALRM)

        # An OS thread, not a greenlet: a greenlet would be blocked with the hub.
        start_os_thread(watch)
        log.info("gevent time-limit watchdog started (checks every %ss)", WATCHDOG_INTERVAL)


def stop_watchdog(**_: Any) -> None:
    """``worker_shutdown`` handler: end the watchdog thread once the pool has drained."""
    while _running:
        _running.pop()[0] = False


def install(app: Celery, settings: Settings) -> None:
    """Run the watchdog in ``app``'s gevent workers, until the worker has shut down."""
    app.steps["worker"].add(Watchdog)
    worker_shutdown.connect(stop_watchdog, weak=False, dispatch_uid="jobq.time_limits.watchdog")
