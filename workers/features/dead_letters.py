"""Dead-lettering failed jobs: every terminal failure is stored, classified, with its traceback.

``task_failure`` fires once per terminal failure: in the pool for an exception (after the last
retry), in the worker's main process for a lost process or a hard time limit. A retry is not a
failure, so nothing that will still run again lands in the store. The store itself
(:mod:`workers.stores.dead_letters`) needs no Celery; this module is the worker's side.

Example::

    install(app, settings)      # from workers/app.py: connects the task_failure handler
"""

from __future__ import annotations

import logging
import traceback as traceback_module
from collections import OrderedDict
from typing import Any

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded, WorkerLostError
from celery.signals import task_failure

from workers.features.delivery_limit import DeliveryLimitExceeded
from workers.keys import QUEUE_ATTRIBUTE
from workers.registry.schema import InvalidArguments
from workers.settings import Settings
from workers.stores.dead_letters import dead_letter

log = logging.getLogger(__name__)

# Outcome of this process's dead-letter writes by job id, until the job's request reads it.
MAX_OUTCOMES = 10_000
_outcomes: OrderedDict[str, bool] = OrderedDict()


def failure_reason(task: Task, exc: BaseException, name: str | None = None) -> str:
    """Classify a terminal failure for the dead-letter entry (``name``: the original class)."""
    if (name or _exception_name(exc)) == InvalidArguments.__name__:
        return "invalid_arguments"
    if isinstance(exc, WorkerLostError):
        return "worker_lost"
    if isinstance(exc, DeliveryLimitExceeded):
        return "delivery_limit"
    if isinstance(exc, TimeLimitExceeded | SoftTimeLimitExceeded):
        return "time_limit"
    transient = tuple(getattr(task, "autoretry_for", ()) or ())
    if transient and isinstance(exc, transient):
        return "retries_exhausted"
    return "failed"


def _exception_name(exc: BaseException) -> str:
    # Celery wraps exceptions that do not survive a pickle round trip (InvalidArguments takes
    # two arguments) in UnpickleableExceptionWrapper, which keeps the original class name.
    return str(getattr(exc, "exc_cls_name", None) or type(exc).__name__)


def _exception_text(exc: BaseException, name: str | None = None) -> str:
    message = getattr(exc, "exc_msg", None) if hasattr(exc, "exc_cls_name") else None
    return f"{name or _exception_name(exc)}: {message if message is not None else exc}"


def dead_letter_failed_job(
    sender: Task | None = None,
    task_id: str | None = None,
    exception: BaseException | None = None,
    args: Any = None,
    kwargs: Any = None,
    einfo: Any = None,
    **_: Any,
) -> None:
    """``task_failure`` handler: store the failed job with its reason, error and arguments."""
    if sender is None or task_id is None or exception is None:
        return
    # Celery replaces an exception that does not pickle (InvalidArguments takes two arguments)
    # by its nearest picklable base class (ValueError); einfo.type is still the original class.
    exc_type = getattr(einfo, "type", None)
    name = exc_type.__name__ if isinstance(exc_type, type) else _exception_name(exception)
    request = sender.request
    delivery = getattr(request, "delivery_info", None) or {}
    trace = getattr(einfo, "traceback", None) or "".join(
        traceback_module.format_exception(exception)
    )
    stored = False
    try:
        dead_letter(
            {
                "id": task_id,
                "job": sender.name,
                "queue": delivery.get("routing_key") or getattr(sender, QUEUE_ATTRIBUTE, None),
                "reason": failure_reason(sender, exception, name),
                "error": _exception_text(exception, name),
                "traceback": trace,
                "args": list(args or []),
                "kwargs": dict(kwargs or {}),
                "retries": getattr(request, "retries", 0) or 0,
                "worker": getattr(request, "hostname", None),
                # Fire and forget stays so when the job is retried from here.
                "ignore_result": bool(getattr(request, "ignore_result", False)),
            }
        )
        stored = True
    except Exception:  # never turn a failure into a crash of the pool or the consumer
        # Not acknowledged either: JobRequest (workers/registry/request.py) reads the outcome
        # and leaves the message to its lease, so the failure is dead-lettered when it recurs.
        log.exception("could not dead-letter job %s; it will come back", task_id)
    _outcomes[task_id] = stored
    while len(_outcomes) > MAX_OUTCOMES:  # prefork children record outcomes nobody reads
        _outcomes.popitem(last=False)


def dead_letter_outcome(task_id: str) -> bool | None:
    """Whether this process stored job ``task_id``'s dead letter (None: it did not try).

    >>> dead_letter_outcome("never-failed") is None
    True
    """
    return _outcomes.pop(task_id, None)


def install(app: Celery, settings: Settings) -> None:
    """Dead-letter every terminal failure of this app's jobs."""
    task_failure.connect(dead_letter_failed_job, weak=False, dispatch_uid="jobq.dead_letters")
