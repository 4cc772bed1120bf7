"""The correlation id: given at submit, carried by every job, inherited by every job it publishes.

A correlation id ties together everything one request caused: ``jobq submit …
--correlation-id ID`` or ``with correlation("ID"): submit(…)`` puts it in the message header
``jobq_correlation_id``; each job a job publishes (the next step of a pipeline, a retry)
inherits it; workers print it on every log line of the job. Without one, a job's correlation id
is Celery's ``root_id``: the id of the first job of its pipeline, so it is always there.

Example::

    with correlation("order-17"):
        submit("fetch_and_analyze", url=...)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from celery import current_task

from workers.keys import CORRELATION_HEADER

# Long ids and control characters would end up in every log line of the job.
MAX_LENGTH = 200

_correlation: ContextVar[str | None] = ContextVar("jobq_correlation_id", default=None)


class InvalidCorrelationId(ValueError):
    """A correlation id that is not printable text of at most 200 characters."""


def check(correlation_id: str) -> str:
    """Return ``correlation_id`` if it is printable text of at most 200 characters."""
    if not correlation_id.isprintable() or len(correlation_id) > MAX_LENGTH:
        raise InvalidCorrelationId(f"must be printable text of at most {MAX_LENGTH} characters")
    return correlation_id


@contextlib.contextmanager
def correlation(correlation_id: str | None) -> Iterator[None]:
    """Jobs submitted inside this block carry ``correlation_id`` (None: no change).

    Raises :class:`InvalidCorrelationId` at once for an id workers would refuse.
    """
    token = _correlation.set(check(correlation_id)) if correlation_id else None
    try:
        yield
    finally:
        if token is not None:
            _correlation.reset(token)


def set_for_process(correlation_id: str) -> None:
    """Every job this process submits from now on carries ``correlation_id`` (the CLI's flag)."""
    _correlation.set(check(correlation_id))


def current_correlation_id() -> str | None:
    """The correlation id in force here: the running job's, else the one set at submit."""
    if current_task and not current_task.request.called_directly:
        return correlation_of(current_task.request)
    return _correlation.get()


def correlation_of(request: Any) -> str:
    """A job's correlation id: its header, else its pipeline's root id, else its own id."""
    return (
        getattr(request, CORRELATION_HEADER, None)
        or getattr(request, "root_id", None)
        or getattr(request, "id", None)
        or ""
    )
