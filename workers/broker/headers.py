"""Checking the header fields of a task message before Celery or jobq reads them.

Any Celery client can put anything in a message's headers. Celery reads some of them as they
are (a dict as the task id stops a worker: it is used as a dict key), and jobq writes others
into the job record, its statistics and its log lines: ``jobq_sent_at="x"`` used to make the
record write raise, dropping every result, record and ack of the group commit's batch, again
at every lease. So before a message reaches Celery's strategy, :func:`header_problem` checks
the type (and, for what ends up in log lines, the text) of every header a worker reads; the
consumer (workers/broker/consumer.py) refuses a message with a problem as ``malformed``. The
delivery info (exchange, routing key) is checked earlier, by the transport
(workers/broker/envelopes.py), because kombu itself uses it before any consumer runs.

Example::

    >>> header_problem({"task": "io_wait", "id": "6f1c", "jobq_sent_at": "x"})
    "header 'jobq_sent_at' must be a number (epoch seconds), got text (1 characters)"
    >>> header_problem({"task": "io_wait", "id": "6f1c"}) is None
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from workers import correlation
from workers.keys import CORRELATION_HEADER, SENT_HEADER

# Celery's ids are UUIDs (36 characters); jobq's own never exceed this either.
MAX_ID_LENGTH = 255

Check = Callable[[Any], bool]


def is_text(value: Any, limit: int = MAX_ID_LENGTH) -> bool:
    """Printable text (no line breaks or control characters) of 1 to ``limit`` characters.

    >>> is_text("6f1c"), is_text("a\\nb"), is_text(""), is_text({})
    (True, False, False, False)
    """
    return isinstance(value, str) and 0 < len(value) <= limit and value.isprintable()


def _optional_text(value: Any) -> bool:
    return value is None or is_text(value)


def _number(value: Any) -> bool:
    # bool is an int to Python, never a time to a producer.
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _optional_number(value: Any) -> bool:
    return value is None or _number(value)


def _retries(value: Any) -> bool:
    return value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 0)


def _time_limits(value: Any) -> bool:
    return value is None or (
        isinstance(value, list | tuple) and len(value) == 2 and all(map(_optional_number, value))
    )


def _correlation_id(value: Any) -> bool:
    return value is None or value == "" or is_text(value, correlation.MAX_LENGTH)


def _optional_str(value: Any) -> bool:
    return value is None or isinstance(value, str)


# header -> (check, what it must be). Headers not named here are not read by jobq, and Celery
# either ignores them or validates them itself (eta and expires: InvalidTaskError).
CHECKS: dict[str, tuple[Check, str]] = {
    "task": (lambda v: is_text(v), "the job's name as text"),
    "id": (lambda v: is_text(v), f"printable text of at most {MAX_ID_LENGTH} characters"),
    "root_id": (_optional_text, f"printable text of at most {MAX_ID_LENGTH} characters"),
    "parent_id": (_optional_text, f"printable text of at most {MAX_ID_LENGTH} characters"),
    "group": (_optional_text, f"printable text of at most {MAX_ID_LENGTH} characters"),
    "shadow": (_optional_text, "printable text"),
    "retries": (_retries, "a whole number of at least 0"),
    "timelimit": (_time_limits, "a pair of numbers or nulls"),
    "argsrepr": (_optional_str, "text"),
    "kwargsrepr": (_optional_str, "text"),
    "origin": (_optional_str, "text"),
    SENT_HEADER: (_optional_number, "a number (epoch seconds)"),
    CORRELATION_HEADER: (
        _correlation_id,
        f"printable text of at most {correlation.MAX_LENGTH} characters",
    ),
}
REQUIRED = ("task", "id")


def header_problem(headers: dict[str, Any]) -> str | None:
    """The first problem with a protocol-2 task message's ``headers``, as one line; None if none.

    The line names the header and what it must be, never its value (which may be huge or hold
    line breaks).
    """
    for name in REQUIRED:
        if name not in headers:
            return f"header {name!r} is missing"
    for name, (check, must_be) in CHECKS.items():
        value = headers.get(name)
        if not check(value):
            return f"header {name!r} must be {must_be}, got {_kind(value)}"
    return None


def property_problem(content_type: Any, content_encoding: Any) -> str | None:
    """A problem with a message's content type or encoding, which Celery's errors quote raw."""
    for name, value in (("content type", content_type), ("content encoding", content_encoding)):
        if value is not None and not is_text(value):
            return f"the {name} must be printable text, got {_kind(value)}"
    return None


def _kind(value: Any) -> str:
    """What a bad value is, without the value itself."""
    if isinstance(value, str):
        control = "" if value.isprintable() else ", with control characters"
        return f"text ({len(value)} characters{control})"
    return type(value).__name__
