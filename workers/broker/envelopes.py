"""Queue items that are not kombu envelopes are handed on as placeholders, never crash a worker.

Before Celery sees a message, kombu's Redis transport decodes the list item as a JSON envelope;
an item that is not JSON (or JSON of the wrong shape) raises inside the event loop and stops the
worker ("Unrecoverable error"), and the item, already popped, is lost. :class:`GuardedChannel`
hands such an item on as a placeholder message whose content type no worker accepts, so it
reaches ``RejectingConsumer.on_decode_error`` (workers/broker/consumer.py) and is dead-lettered
as ``malformed``.

This is a guard, not a speed-up, so it stays on with ``JOBQ_FAST_PATHS`` off. It overrides one
kombu method, ``Channel._brpop_read``; :mod:`workers.broker.compat` checks at start-up that
kombu still has it.

Example::

    $ redis-cli LPUSH io 'not json at all'
    $ jobq dead list          # -> malformed, the worker still running
"""

from __future__ import annotations

import base64
import logging
import uuid
from queue import Empty
from typing import Any

from kombu.transport import redis as redis_transport
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from workers.broker.enqueue_once import EnqueueOnceChannel

log = logging.getLogger(__name__)

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


class GuardedChannel(EnqueueOnceChannel):
    """kombu's Redis channel, refusing undecodable envelopes instead of crashing on them.

    Its ``_put`` records a submit's idempotency key with the push (workers/broker/enqueue_once.py).
    """

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
