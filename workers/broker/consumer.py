"""Refusing bad messages: anything in a queue that is not a valid jobq job is dead-lettered.

Celery's consumer already refuses to *run* such messages, but then forgets them: a body that
is not valid JSON is logged and acked, a pickle message (``ContentDisallowed``: kombu checks the
content type against ``accept_content`` before deserializing, so the pickle is never loaded) or
one without task headers is rejected, an unknown job name is rejected. Each vanishes. This
consumer keeps Celery's handling (log, ack/reject, mark the result failed) and first stores the
message in the dead-letter store with its headers and raw body, so an operator can see what
arrived and from where. Arguments that fail a job's schema are caught later, in
``JobTask.__call__`` (workers/registry/task.py), before the job body runs, and dead-lettered
as ``invalid_arguments``.

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
(``on_decode_error``, ``on_unknown_message``, ``on_unknown_task``, ``on_invalid_task``) are
the consumer's documented extension points, so it stays on with ``JOBQ_FAST_PATHS`` off.

Example::

    $ redis-cli LPUSH io '{"body": "gASV...", "content-type": "application/x-python-serialize"}'
    $ jobq dead list          # -> content_disallowed, the worker still running
"""

from __future__ import annotations

import base64
import logging
from typing import Any

from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed

from workers.broker.envelopes import NOT_AN_ENVELOPE
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
    if headers.get("id"):
        entry["id"] = headers["id"]
    return entry


def _dead_letter_message(message: Any, reason: str, error: str) -> None:
    try:
        dead_letter({**describe_message(message), "reason": reason, "error": error})
    except Exception:  # the consumer must keep consuming even if Redis hiccups here
        log.exception("could not dead-letter a refused message (%s)", reason)


def runnable_jobs() -> frozenset[str]:
    """The task names a worker runs from a message: jobq's io and cpu jobs, nothing else.

    >>> "celery.map" in runnable_jobs()
    False
    """
    return frozenset(name for name, spec in declared_jobs().items() if spec.task is not None)


class RejectingConsumer(Consumer):
    """Celery's consumer, with every refused message dead-lettered before it is dropped."""

    def update_strategies(self) -> None:
        super().update_strategies()
        # A message naming a task without a strategy goes to on_unknown_task: dead-lettered.
        runnable = runnable_jobs()
        for name in [name for name in self.strategies if name not in runnable]:
            del self.strategies[name]

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        reason = "content_disallowed" if isinstance(exc, ContentDisallowed) else "decode_error"
        if message.content_type == NOT_AN_ENVELOPE:
            reason, exc = "malformed", ValueError("the queue item is not a kombu JSON envelope")
        _dead_letter_message(message, reason, f"{type(exc).__name__}: {exc}")
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        _dead_letter_message(message, "malformed", "not a Celery task message (no task header)")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        name = (message.headers or {}).get("task") if isinstance(message.headers, dict) else None
        _dead_letter_message(message, "unknown_job", f"no job named {name!r} is registered")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        reason = "content_disallowed" if isinstance(exc, ContentDisallowed) else "malformed"
        _dead_letter_message(message, reason, f"{type(exc).__name__}: {exc}")
        super().on_invalid_task(body, message, exc)
