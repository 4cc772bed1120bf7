"""Refusing bad messages: anything in a queue that is not a valid jobq job is dead-lettered.

Celery's consumer already refuses to *run* such messages, but then forgets them: a body that
is not valid JSON is logged and acked, a pickle message (``ContentDisallowed``: kombu checks the
content type against ``accept_content`` before deserializing, so the pickle is never loaded) or
one without task headers is rejected, an unknown job name is rejected. Each vanishes. This
consumer keeps Celery's handling (log, ack/reject, mark the result failed) and first stores the
message in the dead-letter store with its headers and raw body, so an operator can see what
arrived and from where. Arguments that fail a job's schema are caught later, in
``JobTask.__call__`` (workers/registry/task.py), before the job body runs, and dead-lettered
as ``invalid_arguments``. Before Celery reads a task message at all, its fields are checked
(workers/broker/headers.py): a task id that is a dict, ``jobq_sent_at="x"`` or a correlation
id with a line break is dead-lettered as ``malformed``, in one log line, and never run.

Only jobq's jobs run from a message. Celery registers its canvas helpers (``celery.map``,
``celery.starmap``, ``celery.chunks``, ``celery.group``, ``celery.chord``,
``celery.chord_unlock``, ``celery.accumulate``, ``celery.backend_cleanup`` ...) in every app, and
a crafted message naming one would call jobs inline past their rate limit and schema
(``celery.map``), or re-send itself forever (``celery.chord_unlock``). jobq's pipelines need
none of them as messages: a chain travels inside its first job's message, and on Redis a chord's
body is sent by the result backend (native join), not by ``celery.chord_unlock``. So the
consumer has no strategy for any task that is not a declared jobq job, and such a message is
refused like an unknown name.

It is installed with Celery's ``worker_consumer`` setting (workers/app.py). The hooks it extends
(``on_decode_error``, ``on_unknown_message``, ``on_unknown_task``, ``on_invalid_task``,
``create_task_handler``) are the consumer's public methods, so it stays on with
``JOBQ_FAST_PATHS`` off.

Example::

    $ redis-cli LPUSH io '{"body": "gASV...", "content-type": "application/x-python-serialize"}'
    $ jobq dead list          # -> content_disallowed, the worker still running
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable
from typing import Any

from celery import signals
from celery.exceptions import InvalidTaskError
from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed

from workers.broker.envelopes import NOT_AN_ENVELOPE
from workers.broker.headers import header_problem, is_text, property_problem
from workers.features.connection_loss import detach_running
from workers.features.leases import leave_to_lease
from workers.keys import REFUSED_HEADER
from workers.registry import declared_jobs
from workers.stores.dead_letters import dead_letter

log = logging.getLogger(__name__)


def describe_message(message: Any) -> dict[str, Any]:
    """Everything useful about a refused message, without deserializing its body."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    delivery = message.delivery_info or {}
    raw = message.body
    if isinstance(raw, bytes):
        try:
            body = raw.decode("utf-8")
        except UnicodeDecodeError:
            body = "base64:" + base64.b64encode(raw).decode("ascii")
    else:
        body = str(raw)
    entry: dict[str, Any] = {
        "job": headers.get("task"),
        "queue": delivery.get("routing_key"),
        "content_type": message.content_type,
        "headers": headers,
        "body": body,
    }
    if is_text(headers.get("id")):  # else the store names it: the id is part of what is wrong
        entry["id"] = headers["id"]
    return entry


def task_fields(message: Any) -> dict[str, Any] | None:
    """The fields of a task message that workers read, by their protocol-2 header names.

    Protocol 2 (every Celery since 4) has them in the headers; protocol 1 in the body, which is
    decoded here (kombu keeps the decoded body for Celery). None: not a task message at all,
    for Celery's own handling to refuse.
    """
    headers = message.headers
    if not isinstance(headers, dict):
        return None
    if "task" in headers:
        return headers
    try:
        body = message.decode()
    except Exception:  # Celery decodes it again and dead-letters it as a decode error
        return None
    if not isinstance(body, dict) or "task" not in body:
        return None
    names = ("task", "id", "retries", "timelimit")
    return {**headers, **{name: body.get(name) for name in names}, "group": body.get("taskset")}


def _dead_letter_message(message: Any, reason: str, error: str) -> bool:
    """Store the refused message; if that fails, leave it to its lease and return False."""
    try:
        dead_letter({**describe_message(message), "reason": reason, "error": error})
    except Exception:  # the consumer must keep consuming even if Redis hiccups here
        # Not acked or rejected either: it comes back after its lease, to be stored then.
        log.exception("could not dead-letter a refused message (%s); it will come back", reason)
        leave_to_lease(message)
        return False
    return True


def runnable_jobs() -> frozenset[str]:
    """The task names a worker runs from a message: jobq's io and cpu jobs, nothing else.

    >>> "celery.map" in runnable_jobs()
    False
    """
    return frozenset(name for name, spec in declared_jobs().items() if spec.task is not None)


class RejectingConsumer(Consumer):
    """Celery's consumer, with every refused message dead-lettered before it is dropped.

    It also keeps running jobs across a lost broker connection
    (:mod:`workers.features.connection_loss`).
    """

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        # Before Celery closes the broken connection: closing it would requeue running jobs.
        detach_running(self)
        super().on_connection_error_after_connected(exc)

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        """Celery's task-message handler, behind a check of the message's header fields."""
        handle = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            problem = property_problem(message.content_type, message.content_encoding)
            if problem is None and (fields := task_fields(message)) is not None:
                problem = header_problem(fields)
            if problem is not None:
                return self.refuse_malformed(message, problem)
            return handle(message)

        return on_task_received

    def refuse_malformed(self, message: Any, problem: str) -> None:
        """Dead-letter ``message`` as malformed and drop it from the queue, in one log line.

        Celery's ``on_invalid_task`` would log the refusal at CRITICAL with an empty traceback;
        the dead-letter line already says what was wrong.
        """
        if not _dead_letter_message(
            message, "malformed", f"{InvalidTaskError.__name__}: {problem}"
        ):
            return
        message.reject_log_error(log, self.connection_errors)
        signals.task_rejected.send(sender=self, message=message, exc=InvalidTaskError(problem))

    def update_strategies(self) -> None:
        super().update_strategies()
        # A message naming a task without a strategy goes to on_unknown_task: dead-lettered.
        runnable = runnable_jobs()
        for name in [name for name in self.strategies if name not in runnable]:
            del self.strategies[name]

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        reason = "content_disallowed" if isinstance(exc, ContentDisallowed) else "decode_error"
        if message.content_type == NOT_AN_ENVELOPE:
            why = (message.headers or {}).get(REFUSED_HEADER) or "not a kombu JSON envelope"
            reason, exc = "malformed", ValueError(f"the queue item is {why}")
        if _dead_letter_message(message, reason, f"{type(exc).__name__}: {exc}"):
            super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        if _dead_letter_message(message, "malformed", "not a Celery task message (no task header)"):
            super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = (message.headers or {}).get("task") if isinstance(message.headers, dict) else None
        if _dead_letter_message(message, "unknown_job", f"no job named {name!r} is registered"):
            super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        reason = "content_disallowed" if isinstance(exc, ContentDisallowed) else "malformed"
        if _dead_letter_message(message, reason, f"{type(exc).__name__}: {exc}"):
            super().on_invalid_task(body, message, exc)
