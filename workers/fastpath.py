"""Worker-side fast path: per-job work jobq batches or skips by default (measured, issue 6).

Profiling a gevent worker running no-op jobs with events on (py-spy, docs/benchmarks.md) put
most of its CPU into Redis round trips, one at a time, for every job. Two of them are cheap to
remove without changing what anyone sees:

* **Task events are batched on gevent too.** Celery already buffers ``task-*`` events and
  publishes them as one ``task.multi`` list per event-loop turn, but only for pools with an
  event loop (prefork); its own comment says gevent "should actually buffer". On gevent each
  job's received/started/succeeded events were three separate PUBLISH round trips. Here they go
  out in batches of up to ``BUFFER_LIMIT`` events, at most ``FLUSH_DELAY`` seconds late.
  Flower and ``celery events`` read list bodies natively (``celery/events/receiver.py``).
* **No per-job log lines at INFO** ("Task … received", "Task … succeeded in …"): at hundreds
  of jobs per second they are most of a worker's log volume and a visible share of its CPU.
  Failures (ERROR) and the worker's own lifecycle lines still log; so do the job's own log
  lines. ``JOBQ_LOG_EACH_JOB=true`` brings the per-job lines (and Celery's retry lines) back.
* **A cheap repr of small results.** Celery renders every return value with its pure-Python
  ``saferepr`` for the ``task-succeeded`` event (what Flower shows as the result): ~100 µs for
  a ten-field dict, 5–8% of an I/O job's worker CPU. For flat results of plain values whose
  ``repr`` is short and identical to ``saferepr``'s, :func:`fast_saferepr` uses the built-in
  ``repr`` (~4 µs); anything else still goes to Celery's.

Example::

    $ JOBQ_LOG_EACH_JOB=true jobq worker io     # one line per received/succeeded job again
"""

from __future__ import annotations

import logging
from typing import Any

import celery.app.trace
from celery import bootsteps
from celery.signals import after_setup_logger
from celery.utils.saferepr import saferepr

from workers.app import app
from workers.settings import get_settings

# Events per batch and the longest an event waits: Flower is at most 50 ms behind.
BUFFER_LIMIT = 64
FLUSH_DELAY = 0.05
# Scalars whose repr is their saferepr; strings only when printable without quotes or escapes.
_PLAIN_SCALARS = (int, float, bool, type(None))
# Celery's per-job INFO lines come from these two loggers only.
PER_JOB_LOGGERS = ("celery.worker.strategy", "celery.app.trace")


class BufferTaskEvents(bootsteps.StartStopStep):
    """Give a gevent worker's event dispatcher the buffering prefork workers already have."""

    requires = ("celery.worker.consumer.events:Events",)

    def start(self, parent: Any) -> None:
        dispatcher = parent.event_dispatcher
        if parent.hub is not None or dispatcher is None or not dispatcher.enabled:
            return  # prefork (event loop): Celery buffers already; or events are off
        if parent.pool is None or type(parent.pool).__module__ != "celery.concurrency.gevent":
            return
        import gevent

        scheduled: list[Any] = []

        def flush() -> None:
            scheduled.clear()
            dispatcher.flush(errors=False, groups=True)

        def on_send_buffered() -> None:
            if not scheduled:
                scheduled.append(gevent.spawn_later(FLUSH_DELAY, flush))

        dispatcher.buffer_group = frozenset({"task"})
        dispatcher.buffer_limit = BUFFER_LIMIT
        dispatcher.on_send_buffered = on_send_buffered

    def shutdown(self, parent: Any) -> None:
        # Warm shutdown: publish what is buffered before the connection closes.
        dispatcher = parent.event_dispatcher
        if dispatcher is not None and dispatcher.buffer_group:
            dispatcher.flush(errors=False, groups=True)


app.steps["consumer"].add(BufferTaskEvents)


@after_setup_logger.connect
def _quiet_per_job_lines(**_: Any) -> None:
    # Set before the worker builds its task tracers: Celery checks isEnabledFor(INFO) once per
    # tracer, so the skipped lines cost nothing at all, not even their formatting.
    if not get_settings().log_each_job:
        for name in PER_JOB_LOGGERS:
            logger = logging.getLogger(name)
            if logger.getEffectiveLevel() <= logging.INFO:
                logger.setLevel(logging.WARNING)


def _plain(value: Any) -> bool:
    if isinstance(value, str):
        return "'" not in value and "\\" not in value and value.isprintable()
    return isinstance(value, _PLAIN_SCALARS)


def fast_saferepr(value: Any, maxlen: int | None = None, *args: Any, **kwargs: Any) -> str:
    """Celery's ``saferepr``, with the built-in ``repr`` for small flat results of plain values.

    >>> fast_saferepr({"status": 200, "url": "http://127.0.0.1/"}, 1024)
    "{'status': 200, 'url': 'http://127.0.0.1/'}"
    """
    if maxlen and not args and not kwargs:
        flat = (
            _plain(value)
            or (
                isinstance(value, dict)
                and len(value) <= 64
                and all(isinstance(k, str) and _plain(k) and _plain(v) for k, v in value.items())
            )
            or (isinstance(value, list) and len(value) <= 64 and all(map(_plain, value)))
        )
        if flat:
            text = repr(value)
            if len(text) <= maxlen:
                return text
    return saferepr(value, maxlen, *args, **kwargs)


# The tracer looks the name up in its module at every call.
celery.app.trace.saferepr = fast_saferepr
