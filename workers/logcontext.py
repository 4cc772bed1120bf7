"""Log lines that say which job they belong to, and a correlation id that follows a job around.

Inside a worker, every log record gets the running job's id, name, queue, pool, process id and
greenlet (gevent) or thread (prefork), plus its *correlation id*. The correlation id is given at
submit (``jobq submit … --correlation-id ID``, or ``with correlation("ID"): submit(…)``) and
travels in the message header ``jobq_correlation_id``; every job a job publishes (the next step
of a pipeline, a retry) inherits it. Without one, the correlation id is Celery's ``root_id``: the
id of the first job of the pipeline, made at submit — so it is always there.

Two formats, chosen with ``JOBQ_LOG_FORMAT`` (``text`` default, ``json``) or
``jobq worker … --log-format json``: JSON puts one object per line, for log shippers.

Example::

    $ JOBQ_LOG_FORMAT=json jobq worker io
    {"ts": "...", "level": "INFO", "message": "fetched ...", "job_id": "6f1…",
     "job_name": "fetch_url", "queue": "io", "pool": "io", "pid": 4242,
     "greenlet": "greenlet-7", "correlation_id": "order-17"}

    with correlation("order-17"):
        submit("fetch_and_analyze", url=...)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import click
from celery._state import get_current_task
from celery.signals import after_setup_logger, after_setup_task_logger, before_task_publish

from workers.jobstats import pool_of_queue

CORRELATION_HEADER = "jobq_correlation_id"
CONTEXT_FIELDS = ("job_id", "job_name", "queue", "pool", "pid", "greenlet", "correlation_id")
TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"

_correlation: ContextVar[str | None] = ContextVar("jobq_correlation_id", default=None)


@contextlib.contextmanager
def correlation(correlation_id: str | None) -> Iterator[None]:
    """Jobs submitted inside this block carry ``correlation_id`` (None: no change)."""
    token = _correlation.set(correlation_id) if correlation_id else None
    try:
        yield
    finally:
        if token is not None:
            _correlation.reset(token)


def use_correlation_id(_ctx: Any, _param: Any, value: str | None) -> str | None:
    """Click callback for ``--correlation-id``: jobs this command submits carry ``value``.

    The command line is one short-lived process, so setting the context variable for the rest
    of it is exactly the scope wanted, with no change to the command's own code.
    """
    if value:
        if not value.isprintable() or len(value) > 200:
            raise click.BadParameter("must be printable text of at most 200 characters")
        _correlation.set(value)
    return value


def current_correlation_id() -> str | None:
    """The correlation id in force here: the running job's, else the one set at submit."""
    task = get_current_task()
    if task is not None and not task.request.called_directly:
        return correlation_of(task.request)
    return _correlation.get()


def correlation_of(request: Any) -> str:
    """A job's correlation id: its header, else its pipeline's root id, else its own id."""
    return (
        getattr(request, CORRELATION_HEADER, None)
        or getattr(request, "root_id", None)
        or getattr(request, "id", None)
        or ""
    )


@before_task_publish.connect
def _stamp_correlation(headers: dict[str, Any] | None = None, **_: Any) -> None:
    # Runs in producers and in workers (a pipeline's next step, a retry): the message inherits
    # the correlation id of the job publishing it, or the one set with correlation().
    if headers is None or headers.get(CORRELATION_HEADER):
        return
    correlation_id = current_correlation_id()
    if correlation_id:
        headers[CORRELATION_HEADER] = correlation_id


def _execution_unit() -> str:
    """The greenlet (gevent worker) or thread running this code."""
    try:
        from gevent import getcurrent
        from gevent.monkey import is_module_patched

        if is_module_patched("threading"):
            current = getcurrent()
            ident = getattr(current, "minimal_ident", None) or id(current)
            return f"greenlet-{ident}"
    except ImportError:  # gevent is optional outside the I/O pool
        pass
    return threading.current_thread().name


class JobContextFilter(logging.Filter):
    """Adds the running job's context (see :data:`CONTEXT_FIELDS`) to every log record.

    Outside a job the fields are "-", except for Celery's own "received/succeeded/failed" lines,
    which name their job in ``record.data``.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        context = job_context()
        data = getattr(record, "data", None)
        if context["job_id"] == "-" and isinstance(data, dict) and data.get("id"):
            context["job_id"] = str(data["id"])
            context["job_name"] = str(data.get("name") or "-")
        for key, value in context.items():
            setattr(record, key, value)
        return True


def job_context() -> dict[str, Any]:
    """The context fields for the code running now ("-" where there is no job)."""
    task = get_current_task()
    context: dict[str, Any] = dict.fromkeys(CONTEXT_FIELDS, "-")
    context["pid"] = os.getpid()
    context["greenlet"] = _execution_unit()
    if task is None or task.request.called_directly:
        return context
    request = task.request
    queue = (getattr(request, "delivery_info", None) or {}).get("routing_key") or ""
    context.update(
        job_id=request.id or "-",
        job_name=task.name,
        queue=queue or "-",
        pool=pool_of_queue(queue) if queue else "-",
        correlation_id=correlation_of(request) or "-",
    )
    return context


class TextJobFormatter(logging.Formatter):
    """Celery's usual line, followed by ``[job=… id=… queue=… pool=… pid=… on=… cid=…]``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        if getattr(record, "job_id", "-") == "-":
            return line
        return (
            f"{line} [job={record.job_name} id={record.job_id} queue={record.queue} "
            f"pool={record.pool} pid={record.pid} on={record.greenlet} "
            f"cid={record.correlation_id}]"
        )


class JsonJobFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the job context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.processName,
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, "-")
            entry[key] = None if value == "-" else value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def log_format() -> str:
    """``JOBQ_LOG_FORMAT``: ``text`` (default) or ``json``, validated by ``Settings``."""
    from workers.settings import get_settings

    return get_settings().log_format


def install(logger: logging.Logger) -> None:
    """Put the job-context filter and jobq's formatter on every handler of ``logger``."""
    formatter: logging.Formatter = (
        JsonJobFormatter() if log_format() == "json" else TextJobFormatter(TEXT_FORMAT)
    )
    for handler in logger.handlers:
        if not any(isinstance(f, JobContextFilter) for f in handler.filters):
            handler.addFilter(JobContextFilter())
        handler.setFormatter(formatter)


@after_setup_logger.connect
@after_setup_task_logger.connect
def _install_on_celery_loggers(logger: logging.Logger | None = None, **_: Any) -> None:
    # Celery sets up the root logger and the "celery.task" logger (which does not propagate),
    # in the worker and again in each prefork child; both signals land here.
    if logger is not None:
        install(logger)
