"""Queue items that are not kombu envelopes are handed on as placeholders, never crash a worker.

Before Celery sees a message, kombu's Redis transport decodes the list item as a JSON envelope;
an item that is not JSON (or JSON of the wrong shape) raises inside the event loop and stops the
worker ("Unrecoverable error"), and the item, already popped, is lost. :class:`GuardedChannel`
hands such an item on as a placeholder message whose content type no worker accepts, so it
reaches ``RejectingConsumer.on_decode_error`` (workers/broker/consumer.py) and is dead-lettered
as ``malformed``.

This is a guard, not a speed-up, so it stays on with ``JOBQ_FAST_PATHS`` off, on the channel
that takes each message and records it as unacked in one step (workers/broker/take.py). It
overrides kombu's ``Channel._brpop_read``; :mod:`workers.broker.compat` checks at start-up that
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
from workers.broker.headers import is_text
from workers.broker.take import TakingChannel
from workers.keys import REFUSED_HEADER
from workers.pools import POOLS

# The queues jobq's jobs are consumed from (io, cpu).
JOB_QUEUES = frozenset(profile.queue for profile in POOLS.values())

log = logging.getLogger(__name__)

NOT_AN_ENVELOPE = "application/x-jobq-not-an-envelope"


class UnusableEnvelope(ValueError):
    """A queue item kombu could decode but must not deliver (its delivery info is unusable)."""


def _placeholder(item: bytes | str, queue: str, why: str) -> dict[str, Any]:
    raw = item if isinstance(item, bytes) else item.encode("utf-8", "surrogateescape")
    return {
        "body": base64.b64encode(raw).decode("ascii"),
        "content-encoding": "binary",
        "content-type": NOT_AN_ENVELOPE,
        "headers": {REFUSED_HEADER: why},
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
        # kombu files the message under both (unacked, lease restore) and jobq names its
        # statistics and log lines after the routing key: text, or kombu's lease sweep fails
        # on it for every message, the same way the script of the batched fetch refuses it.
        for field in ("exchange", "routing_key"):
            value = delivery.get(field)
            if not isinstance(value, str) or (value and not is_text(value)):
                raise UnusableEnvelope(f"a message whose {field} is not printable text")
        # A job whose lease expires goes back where its routing key points: for any other name
        # than its own queue, a list no worker reads, where it would be lost.
        if queue in JOB_QUEUES and (delivery["routing_key"], delivery["exchange"]) not in {
            (queue, ""),
            (queue, queue),
        }:
            raise UnusableEnvelope(f"a message whose routing key or exchange is not {queue!r}")
        channel.Message(payload, channel=channel)  # what the consumer callback will build
    except UnusableEnvelope as exc:
        log.error("refused %s in %r", exc, queue)
        return _placeholder(item, queue, str(exc))
    except Exception:
        log.error("refused a message in %r that is not a kombu envelope", queue)
        return _placeholder(item, queue, "not a kombu JSON envelope")
    return dict(payload)


class GuardedChannel(TakingChannel, EnqueueOnceChannel):
    """jobq's Redis channel, refusing undecodable envelopes instead of crashing on them.

    It takes and records deliveries in one step (:mod:`workers.broker.take`), and its ``_put``
    records a submit's idempotency key with the push (:mod:`workers.broker.enqueue_once`).
    """

    def decode(self, item: bytes, queue: str) -> dict[str, Any]:
        return decode_envelope(self, item, queue)

    def _brpop_read(self, **options: Any) -> bool:
        if self._waiting != "BRPOP":
            return super()._brpop_read(**options)  # the take script decodes with decode()
        # kombu's BRPOP (a key prefix, or only no_ack queues: see TakingChannel.takes): mirrors
        # kombu 5.7.0 Channel._brpop_read; only the decoding differs.
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
        self.connection._deliver(decode_envelope(self, item, dest), dest)
        return True


class GuardedRedisTransport(redis_transport.Transport):
    """The Redis transport with :class:`GuardedChannel`; selected by ``broker_transport``."""

    Channel = GuardedChannel
