"""Log lines that say which job they belong to, as text or JSON.

Inside a worker, every log record gets the running job's id, name, queue, pool, process id and
greenlet (gevent) or thread (prefork), plus its correlation id (:mod:`workers.correlation`).
Two formats, chosen with ``JOBQ_LOG_FORMAT`` (``text`` default, ``json``) or
``jobq worker … --log-format json``: JSON puts one object per line, for log shippers.

Example::

    $ JOBQ_LOG_FORMAT=json jobq worker io
    {"ts": "...", "level": "INFO", "message": "fetched ...", "job_id": "6f1…",
     "job_name": "fetch_url", "queue": "io", "pool": "io", "pid": 4242,
     "greenlet": "greenlet-7", "correlation_id": "order-17"}
"""

from __future__ import annotations

import json
import logging
import os
import threading
from datetime import UTC, datetime
from typing import Any

from celery import Celery, current_task
from celery.signals import after_setup_logger, after_setup_task_logger

from workers.correlation import correlation_of
from workers.logsafe import one_line
from workers.pools import on_gevent
from workers.settings import Settings, get_settings
from workers.stores.job_stats import pool_of_queue

CONTEXT_FIELDS = ("job_id", "job_name", "queue", "pool", "pid", "greenlet", "correlation_id")
TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(message)s"


def _execution_unit() -> str:
    """The greenlet (gevent worker) or thread running this code."""
    if on_gevent():
        from gevent import getcurrent

        current = getcurrent()
        ident = getattr(current, "minimal_ident", None) or id(current)
        return f"greenlet-{ident}"
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
            context["job_id"] = one_line(str(data["id"]))
            context["job_name"] = one_line(str(data.get("name") or "-"))
        for key, value in context.items():
            setattr(record, key, value)
        return True


def job_context() -> dict[str, Any]:
    """The context fields for the code running now ("-" where there is no job)."""
    context: dict[str, Any] = dict.fromkeys(CONTEXT_FIELDS, "-")
    context["pid"] = os.getpid()
    context["greenlet"] = _execution_unit()
    if not current_task or current_task.request.called_directly:
        return context
    task = current_task
    request = task.request
    queue = (getattr(request, "delivery_info", None) or {}).get("routing_key") or ""
    context.update(
        job_id=one_line(str(request.id or "-")),
        job_name=task.name,
        queue=one_line(str(queue or "-")),
        pool=one_line(str(pool_of_queue(queue))) if queue else "-",
        correlation_id=one_line(str(correlation_of(request) or "-")),
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


def format_handlers(logger: logging.Logger) -> None:
    """Put the job-context filter and jobq's formatter on every handler of ``logger``."""
    formatter: logging.Formatter = (
        JsonJobFormatter() if get_settings().log_format == "json" else TextJobFormatter(TEXT_FORMAT)
    )
    for handler in logger.handlers:
        if not any(isinstance(f, JobContextFilter) for f in handler.filters):
            handler.addFilter(JobContextFilter())
        handler.setFormatter(formatter)


def _on_logging_set_up(logger: logging.Logger | None = None, **_: Any) -> None:
    # Celery sets up the root logger and the "celery.task" logger (which does not propagate),
    # in the worker and again in each prefork child; both signals land here.
    if logger is not None:
        format_handlers(logger)


def install(app: Celery, settings: Settings) -> None:
    """Format the worker's log lines with the running job's context."""
    after_setup_logger.connect(_on_logging_set_up, weak=False, dispatch_uid="jobq.log_context")
    after_setup_task_logger.connect(
        _on_logging_set_up, weak=False, dispatch_uid="jobq.log_context.task"
    )
