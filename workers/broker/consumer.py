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
from workers.features.connection_loss import detach_running
from workers.features.leases import leave_to_lease
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


class RejectingConsumer(Consumer):
    """Celery's consumer, with every refused message dead-lettered before it is dropped.

    It also keeps running jobs across a lost broker connection
    (:mod:`workers.features.connection_loss`).
    """

    def on_connection_error_after_connected(self, exc: Exception) -> None:
        # Before Celery closes the broken connection: closing it would requeue running jobs.
        detach_running(self)
        super().on_connection_error_after_connected(exc)

    def on_decode_error(self, message: Any, exc: Exception) -> None:
        reason = "content_disallowed" if isinstance(exc, ContentDisallowed) else "decode_error"
        if message.content_type == NOT_AN_ENVELOPE:
            reason, exc = "malformed", ValueError("the queue item is not a kombu JSON envelope")
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
