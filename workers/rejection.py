"""Refusing bad messages: anything in a queue that is not a valid jobq job is dead-lettered.

Celery's consumer already refuses to *run* such messages, but then forgets them: a body that
is not valid JSON is logged and acked, a pickle message (``ContentDisallowed``: kombu checks the
content type against ``accept_content`` before deserializing, so the pickle is never loaded) or
one without task headers is rejected, an unknown job name is rejected. Each vanishes. This
consumer keeps Celery's handling (log, ack/reject, mark the result failed) and first stores the
message in the dead-letter store with its headers and raw body, so an operator can see what
arrived and from where. Arguments that fail a job's schema are caught later, in
``JobTask.__call__``, before the job body runs, and dead-lettered as ``invalid_arguments``.

It is installed with Celery's ``worker_consumer`` setting (workers/app.py).

Example::

    $ redis-cli LPUSH io '{"body": "gASV...", "content-type": "application/x-python-serialize"}'
    $ jobq dead list          # -> content_disallowed, the worker still running
"""

from __future__ import annotations

import base64
import logging
import uuid
from queue import Empty
from typing import Any

from celery.worker.consumer import Consumer
from kombu.exceptions import ContentDisallowed
from kombu.transport import redis as redis_transport
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from workers.deadletter import dead_letter

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


class RejectingConsumer(Consumer):
    """Celery's consumer, with every refused message dead-lettered before it is dropped."""

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


# --- Envelopes that are not kombu messages at all ------------------------------------------
# Before Celery sees a message, kombu's Redis transport decodes the list item as a JSON
# envelope; an item that is not JSON (or JSON of the wrong shape) raises inside the event loop
# and stops the worker ("Unrecoverable error"), and the item, already popped, is lost. The
# transport below hands such an item on as a placeholder message whose content type no worker
# accepts, so it reaches RejectingConsumer.on_decode_error and is dead-lettered as "malformed".

NOT_AN_ENVELOPE = "application/x-jobq-not-an-envelope"


def _placeholder(item: bytes | str, queue: str) -> dict[str, Any]:
    raw = item if isinstance(item, bytes) else item.encode("utf-8", "surrogateescape")
    return {
        "body": base64.b64encode(raw).decode("ascii"),
        "content-encoding": "binary",
        "content-type": NOT_AN_ENVELOPE,
        "headers": {},
        "properties": {
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
        },
    }


def decode_envelope(channel: Any, item: bytes | str, queue: str) -> dict[str, Any]:
    """The envelope in ``item``, or a placeholder when it is not a usable kombu envelope."""
    try:
        payload = loads(bytes_to_str(item))
        delivery = payload["properties"]["delivery_info"]
        if not {"exchange", "routing_key"} <= delivery.keys():  # QoS.append reads both
            raise KeyError("delivery_info lacks exchange or routing_key")
        channel.Message(payload, channel=channel)  # what the consumer callback will build
    except Exception:
        log.error("refused a message in %r that is not a kombu envelope", queue)
        return _placeholder(item, queue)
    return dict(payload)


class GuardedChannel(redis_transport.Channel):
    """kombu's Redis channel, refusing undecodable envelopes instead of crashing on them."""

    def _brpop_read(self, **options: Any) -> bool:
        # Mirrors kombu 5.7.0 Channel._brpop_read; the popped item is handed to _deliver_popped.
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            key, item = dest__item
            dest = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()
        self._deliver_popped(dest, item)
        return True

    def _deliver_popped(self, dest: str, item: bytes) -> None:
        """Deliver an item BRPOP took from queue ``dest``; only the decoding differs from kombu."""
        self.connection._deliver(decode_envelope(self, item, dest), dest)


class GuardedRedisTransport(redis_transport.Transport):
    """The Redis transport with :class:`GuardedChannel`; selected by ``broker_transport``."""

    Channel = GuardedChannel
