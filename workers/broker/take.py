"""Taking a message and recording it as unacked in one atomic step; waiting out a full Redis.

kombu's Redis channel fetches with BRPOP, which removes the message, then records it in
``unacked``/``unacked_index`` in a second round trip. Between the two the message is only in
the worker's memory: a worker killed there, a connection dropped there, or a Redis that refuses
the second write loses it. The last is the common one: a Redis at ``maxmemory`` with
``noeviction`` still serves BRPOP (a pop frees memory) but refuses the ZADD/HSET, and kombu's
channel then stops on the error, so the restarted worker loses the next message the same way.

:class:`TakingChannel` fetches differently:

* **The blocking wait takes nothing.** It sends ``BLMOVE q q RIGHT RIGHT``: it blocks until the
  queue's list has a message and answers with it, moving it from the tail of its list to the
  tail of the same list (no change in order). Redis has no multi-key wait that does not pop, so
  the wait is on the first list of the rotating queue order; the other lists (other priorities,
  other queues) are checked when the wait times out (kombu's ``brpop_timeout``, 1 s). A
  message wakes every idle worker waiting on that list (the move puts it back, so Redis serves
  the next waiter too); all but one then find nothing to take and wait again.
* **One script takes and records.** ``fetch_and_record.lua`` RPOPs up to N messages and records
  each in ``unacked`` in the same atomic step, in kombu's format (``restore_visible`` and the
  ``jobq`` tools read it as before). If the reply is lost, the messages are recorded and come
  back when their lease expires; nothing is lost.
* **A Redis that refuses writes is waited out.** ``OOM command not allowed`` (maxmemory),
  ``READONLY`` (a replica) and ``MISCONF`` (cannot persist) refuse the wait itself (BLMOVE
  needs memory), before anything is taken. The channel logs it, waits (a server-side BLPOP on a
  key nothing writes, so the event loop keeps running), retries, says it again every
  :data:`REPEAT_S` seconds while it lasts, and once when Redis accepts writes again.

Used by both transports: the batched one (fast paths) takes up to 33 messages per round trip,
the guarded one (``JOBQ_FAST_PATHS=false``) one. With kombu's ``global_keyprefix`` (which
scripts do not get) the channel falls back to kombu's BRPOP.

Example (the log of a worker while Redis is full, then freed)::

    WARNING cannot take jobs: Redis is full (OOM command not allowed when used memory > ...);
            they stay in their queues; retrying every 1.0 s
    WARNING Redis accepts writes again after 12.3 s: taking jobs
"""

from __future__ import annotations

import logging
import time
from queue import Empty
from typing import Any

from kombu.transport import redis as redis_transport
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

from workers import keys
from workers.broker.lease_clock import LeasedQoS
from workers.settings import get_settings
from workers.stores.scripts import LuaScript

log = logging.getLogger(__name__)

TAKE = LuaScript(__package__, "fetch_and_record.lua")

# Pause between attempts while Redis refuses writes, and how often the refusal is logged again.
RETRY_S = 1.0
REPEAT_S = 30.0


def refusal(exc: BaseException) -> str | None:
    """Why Redis refused a write (full, read-only, cannot persist), or None for other errors.

    >>> refusal(OutOfMemoryError("command not allowed when used memory > 'maxmemory'."))
    "Redis is full (command not allowed when used memory > 'maxmemory'.)"
    >>> refusal(ResponseError("WRONGTYPE Operation against a key")) is None
    True
    """
    if isinstance(exc, OutOfMemoryError):
        return f"Redis is full ({exc})"
    if isinstance(exc, ReadOnlyError):
        return f"Redis is read-only ({exc})"
    if isinstance(exc, ResponseError) and str(exc).startswith("MISCONF"):
        return f"Redis cannot persist ({exc})"
    return None


class RefusedWrites:
    """When the channel may try again, and the log lines of a refusal: first, repeats, end."""

    def __init__(self) -> None:
        self.since: float | None = None  # monotonic time of the first refusal, None: accepted
        self.retry_at = 0.0
        self._logged_at = 0.0

    def refused(self, reason: str) -> None:
        now = time.monotonic()
        self.retry_at = now + RETRY_S
        if self.since is None:
            self.since = self._logged_at = now
            log.warning(
                "cannot take jobs: %s; they stay in their queues; retrying every %.1f s",
                reason,
                RETRY_S,
            )
        elif now - self._logged_at >= REPEAT_S:
            self._logged_at = now
            log.warning("still cannot take jobs after %.0f s: %s", now - self.since, reason)

    def accepted(self) -> None:
        if self.since is not None:
            log.warning(
                "Redis accepts writes again after %.1f s: taking jobs",
                time.monotonic() - self.since,
            )
            self.since = None

    def pause_s(self) -> float:
        """How long to wait before the next attempt (0: try now)."""
        return max(0.0, self.retry_at - time.monotonic())


class RecordingQoS(LeasedQoS):
    """jobq's leased QoS (Redis clock), skipping the bookkeeping the take script already did."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: set[str] = set()  # delivery tags the take script put in ``unacked``

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # in memory only
            return
        super().append(message, delivery_tag)

    def _remove_from_indices(self, delivery_tag: str, pipe: Any = None) -> Any:
        if pipe is not None:  # kombu's restore passes its WATCHed transaction
            return super()._remove_from_indices(delivery_tag, pipe)
        # An ack without MULTI: a full Redis 7 refuses every command queued in MULTI, and the
        # refused ack stopped the worker; ZREM and HDEL alone free memory and are accepted.
        with self.channel.conn_or_acquire() as client:
            pipe = client.pipeline(transaction=False)
        return pipe.zrem(self.unacked_index_key, delivery_tag).hdel(self.unacked_key, delivery_tag)


class TakingChannel(redis_transport.Channel):
    """kombu's Redis channel, fetching with a non-popping wait and the take script."""

    QoS = RecordingQoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._no_ack_queues: set[str] = set()
        self._refused = RefusedWrites()
        self._waiting = "BLMOVE"  # the blocking command in flight: BLMOVE (a wait) or BLPOP
        super().__init__(*args, **kwargs)

    def take_limit(self) -> int:
        """How many messages one take may return (at least 1)."""
        return 1

    def cancel_args(self) -> list[Any]:
        """The take script's cancel check: drop cancelled jobs, recording them (cancels.py)."""
        return [keys.CANCEL_PREFIX, keys.RECORD_PREFIX, get_settings().result_expires]

    def decode(self, item: bytes, queue: str) -> dict[str, Any]:
        """The envelope in ``item``, a queue item of ``queue``."""
        return loads(bytes_to_str(item))

    def basic_consume(self, queue: str, no_ack: bool = False, *args: Any, **kwargs: Any) -> Any:
        # Consumers with no_ack (Celery's control replies, for one) never ack: their messages
        # must not be recorded as unacked, or a lease sweep would deliver them again.
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _queue_bind(self, *args: Any) -> None:
        # A worker starting while Redis refuses writes cannot record its bindings (its own
        # control queue's is new): it waits here, saying so, instead of stopping.
        while True:
            try:
                super()._queue_bind(*args)
            except ResponseError as exc:
                self._on_refusal(exc)
                time.sleep(RETRY_S)
                continue
            self._refused.accepted()
            return

    def _size(self, queue: str) -> int:
        # kombu's, without MULTI around the LLENs: a full Redis 7 refuses every command queued
        # in MULTI, and a worker declaring its queues at start-up then stopped.
        with self.conn_or_acquire() as client, client.pipeline(transaction=False) as pipe:
            for pri in self.priority_steps:
                pipe.llen(self._q_for_pri(queue, pri))
            return sum(size for size in pipe.execute() if isinstance(size, int))

    def takes(self) -> bool:
        """True when this channel fetches with the wait and the take script.

        Not with a key prefix (kombu's prefixing does not reach scripts), nor when every queue
        it consumes is ``no_ack`` (Celery's control replies): nothing is recorded for those, so
        kombu's BRPOP loses nothing, and it wakes on any of them, not on the first only.
        """
        return not self.global_keyprefix and any(
            queue not in self._no_ack_queues for queue in self.active_queues
        )

    def _brpop_start(self, timeout: float | None = None) -> None:
        if not self.takes():
            self._waiting = "BRPOP"
            return super()._brpop_start(timeout)
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return None
        pause = self._refused.pause_s()
        if pause:
            self._waiting, command = "BLPOP", ("BLPOP", keys.TAKE_PAUSE_KEY, f"{pause:.3f}")
        else:
            key = self._q_for_pri(queues[0], self.priority_steps[0])
            wait = self.brpop_timeout if timeout is None else timeout
            self._waiting, command = "BLMOVE", ("BLMOVE", key, key, "RIGHT", "RIGHT", wait or 0)
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()
        self.client.connection.send_command(*command)
        return None

    def _brpop_read(self, **options: Any) -> bool:
        if self._waiting == "BRPOP":
            return super()._brpop_read(**options)
        try:
            try:
                self.client.parse_response(self.client.connection, self._waiting, **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except ResponseError as exc:
                self._on_refusal(exc)  # Redis refused the wait: nothing was taken
                raise Empty() from None
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()
        if self._waiting == "BLPOP":
            raise Empty()  # the pause is over; the next poll waits for messages again
        # A message arrived in the first list, or the wait timed out: take from every list.
        if not self._take_and_deliver():
            raise Empty()
        return True

    def _on_refusal(self, exc: ResponseError) -> None:
        reason = refusal(exc)
        if reason is None:
            raise exc
        self._refused.refused(reason)

    def _take_and_deliver(self) -> bool:
        """Take up to :meth:`take_limit` messages (recorded as unacked) and deliver them."""
        queues = self._queue_cycle.consume(len(self.active_queues))
        keys, names, record = [], [], []
        for pri in self.priority_steps:
            for queue in queues:
                keys.append(self._q_for_pri(queue, pri))
                names.append(queue)
                record.append("0" if queue in self._no_ack_queues else "1")
        try:
            with self.conn_or_acquire() as client:
                reply = TAKE(
                    client,
                    keys=[
                        self.unacked_index_key,
                        self.unacked_key,
                        *keys,
                    ],  # ARGV[1] unused: leases start at Redis TIME
                    args=["", max(1, self.take_limit()), "".join(record), *self.cancel_args()],
                )
        except ResponseError as exc:
            self._on_refusal(exc)
            return False
        self._refused.accepted()
        for i in range(0, len(reply), 3):
            queue = names[int(reply[i]) - 1]
            payload = self.decode(reply[i + 1], queue)
            recorded = bytes_to_str(reply[i + 2])
            if recorded and payload["properties"]["delivery_tag"] == recorded:
                self.qos.recorded.add(recorded)
            elif recorded:
                # The script recorded it, Python refused the envelope (a placeholder with a new
                # tag replaces it): drop the script's bookkeeping, or its lease would bring it back.
                self.qos._remove_from_indices(recorded).execute()
            self._queue_cycle.rotate(queue)
            try:
                self.connection._deliver(payload, queue)
            except ResponseError as exc:
                # Only a refused envelope's placeholder is recorded on delivery (kombu's
                # append); on a full Redis it is dropped, as it was taken, with this log line.
                self._on_refusal(exc)
        return bool(reply)
