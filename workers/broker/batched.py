"""jobq's Redis transport: kombu's, receiving and acknowledging messages in batches.

kombu's Redis transport costs a consumer two round trips per message before the job starts, a
BRPOP, then its unacked bookkeeping (ZADD ``unacked_index`` + HSET ``unacked``), and one more
to acknowledge it (ZREM + HDEL). On a gevent worker running short I/O jobs these were over a
third of the worker's CPU (py-spy, docs/benchmarks.md). This transport keeps kombu's keys,
message format and lease semantics (any kombu/Celery client and worker still interoperate) and
changes how many round trips they take:

* **Batched fetch.** When BRPOP returns a message, one Lua script records it as unacked and
  pops up to :data:`FETCH_BATCH` more ready messages (never past the prefetch limit), recording
  each in ``unacked`` in the same atomic step. Popping and recording in one script also closes,
  for those messages, the window in which a worker dying between kombu's BRPOP and its
  bookkeeping loses the message. An idle worker still blocks on BRPOP: no polling.
* **Batched acks.** On a gevent worker, an ack's Redis side goes out with the group commit
  (workers/features/group_commit.py), after the job's result; elsewhere it is kombu's.
* **No stall on a full window.** With batched fetch a gevent worker's prefetch window fills in
  a few round trips; kombu's synchronous poller then waits on an idle socket until its 2 s
  timeout even though jobs finished meanwhile. The QoS wakes the poller (a self-pipe) as soon
  as an ack reopens the window. Event-loop workers (prefork) re-check on every loop tick.
* **One client object per channel.** kombu builds a new redis-py client for every publish and
  ack; building one copies ~300 response callbacks (~0.4 ms). The channel keeps one, on the
  same connection pool.
* **Refused envelopes.** Items that are not kombu envelopes are refused as in
  :class:`~workers.broker.envelopes.GuardedChannel`; the script leaves them unrecorded and the
  consumer dead-letters them.

Selected with ``broker_transport = "workers.broker.batched:RedisTransport"`` by workers/app.py when
``JOBQ_FAST_PATHS`` is on (the default). It relies on kombu internals (``Channel._brpop_read``,
``QoS._delivered``, ``MultiChannelPoller``); with the switch off, workers use only the guard of
:mod:`workers.broker.envelopes` and kombu's own fetch and acks.

Example::

    >>> from kombu import Connection
    >>> Connection("redis://127.0.0.1:6379/0", transport="workers.broker.batched:RedisTransport")
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from kombu.transport import redis as redis_transport
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.eventio import READ
from kombu.utils.json import dumps

from workers.broker.envelopes import GuardedChannel, GuardedRedisTransport, decode_envelope
from workers.broker.lease_clock import LeasedQoS
from workers.features import group_commit
from workers.stores.scripts import LuaScript

# Most messages one fetch adds to the one BRPOP returned: large enough to amortize the round
# trip, small enough that one worker does not drain a short queue its peers could share.
FETCH_BATCH = 32

FETCH = LuaScript(__package__, "fetch_and_record.lua")


class BatchedQoS(LeasedQoS):
    """jobq's leased QoS, skipping the bookkeeping the fetch script already did, acks batched."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recorded: set[str] = set()  # delivery tags the fetch script put in ``unacked``

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            virtual.QoS.append(self, message, delivery_tag)  # in memory only
            return
        super().append(message, delivery_tag)

    def ack(self, delivery_tag: str) -> None:
        commit = group_commit.active()
        if commit is not None:
            # The Redis side goes with the batch, which then calls release(): until then the
            # delivery still counts against the prefetch window, so the window bounds what the
            # broker shows as unacked, exactly as with kombu's immediate acks.
            commit.ack(self, delivery_tag)
            return
        self._remove_from_indices(delivery_tag).execute()  # kombu's ack, then the same release
        self.release([delivery_tag])

    def _wake_consumer(self) -> None:
        transport = getattr(self.channel, "connection", None)  # None once the channel closed
        cycle = getattr(transport, "cycle", None)
        if isinstance(cycle, WakeablePoller):
            cycle.wake()

    def release(self, delivery_tags: list[str]) -> None:
        """Forget acknowledged deliveries (their Redis side is done or given up): slots free."""
        was_full = not self.can_consume()
        for tag in delivery_tags:
            virtual.QoS.ack(self, tag)
        if was_full:
            self._wake_consumer()


class WakeablePoller(redis_transport.MultiChannelPoller):
    """kombu's poller, which a consumer waiting on a full prefetch window can be woken from.

    Only in the synchronous loop (gevent, solo, threads pools): an event loop (prefork)
    replaces the poller with its own in :meth:`on_poll_init` and checks on every tick.
    """

    def __init__(self) -> None:
        super().__init__()
        self._wake_fds: tuple[int, int] | None = None
        self._wake_pending = False
        self._on_event_loop = False

    def on_poll_init(self, poller: Any) -> Any:
        self._on_event_loop = True
        return super().on_poll_init(poller)

    def wake(self) -> None:
        """Make a waiting :meth:`get` return, so the consumer polls for messages again."""
        if self._wake_fds is None or self._wake_pending or self._on_event_loop:
            return
        self._wake_pending = True
        with contextlib.suppress(BlockingIOError):  # the pipe is full: a wake-up is pending
            os.write(self._wake_fds[1], b"\0")

    def on_poll_start(self) -> None:
        if self._wake_fds is None and not self._on_event_loop:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            os.set_blocking(write_fd, False)
            self._wake_fds = (read_fd, write_fd)
            self.poller.register(read_fd, READ)
        super().on_poll_start()

    def handle_event(self, fileno: int, event: int) -> Any:
        if self._wake_fds is not None and fileno == self._wake_fds[0]:
            with contextlib.suppress(BlockingIOError):
                os.read(fileno, 4096)
            self._wake_pending = False
            # Truthy, like a delivery: drain_events returns and the consumer's next poll
            # registers BRPOP again now that the window has room.
            return None, self
        return super().handle_event(fileno, event)

    def close(self) -> None:
        super().close()
        if self._wake_fds is not None:
            for fd in self._wake_fds:
                os.close(fd)
            self._wake_fds = None


class BatchedChannel(GuardedChannel):
    """The guarded Redis channel with batched fetch (see the module docstring)."""

    QoS = BatchedQoS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._no_ack_queues: set[str] = set()
        super().__init__(*args, **kwargs)

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        # kombu builds a new redis-py client object for every publish and ack (~0.4 ms each:
        # it copies ~300 response callbacks); one per channel, on the same pool, does the same.
        if client is None:
            client = self.__dict__.get("_jobq_client")
            if client is None:
                client = self.__dict__["_jobq_client"] = self._create_client()
        yield client

    def basic_consume(self, queue: str, no_ack: bool = False, *args: Any, **kwargs: Any) -> Any:
        # Consumers with no_ack (Celery's control replies, for one) never ack: their messages
        # must not be recorded as unacked, or a lease sweep would deliver them again.
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _deliver_popped(self, dest: str, item: bytes) -> None:
        for payload, queue in self._record_and_fetch_more(dest, item):
            self.connection._deliver(payload, queue)

    def _record_and_fetch_more(self, dest: str, item: bytes) -> list[tuple[dict[str, Any], str]]:
        """Record the BRPOP'd message as unacked and pop more: one round trip."""
        first = decode_envelope(self, item, dest)
        if self.global_keyprefix or dest in self._no_ack_queues:
            # kombu's own path: its key prefixing does not reach scripts; no_ack: nothing to do.
            return [(first, dest)]  # kombu's own path: its prefixing does not reach scripts
        props = first["properties"]
        tag, info = props["delivery_tag"], props["delivery_info"]
        record = dumps([first, info["exchange"], info["routing_key"]])
        limit = self.qos.can_consume_max_estimate()
        more = FETCH_BATCH if limit is None else max(0, min(FETCH_BATCH, limit - 1))
        queues = [
            queue
            for queue in self._queue_cycle.consume(len(self.active_queues))
            if queue not in self._no_ack_queues
        ]
        keys, names = [], []
        for pri in self.priority_steps:
            for queue in queues:
                keys.append(self._q_for_pri(queue, pri))
                names.append(queue)
        with self.conn_or_acquire() as client:
            reply = FETCH(
                client,
                keys=[self.unacked_index_key, self.unacked_key, *keys],
                args=["", more, tag, record],  # ARGV[1] unused: the lease starts at Redis TIME
            )
        self.qos.recorded.add(tag)
        deliveries = [(first, dest)]
        for i in range(0, len(reply), 3):
            queue = names[int(reply[i]) - 1]
            payload = decode_envelope(self, reply[i + 1], queue)
            recorded = bytes_to_str(reply[i + 2])
            if recorded and payload["properties"]["delivery_tag"] == recorded:
                self.qos.recorded.add(recorded)
            elif recorded:
                # Lua found a tag, Python refused the envelope (a placeholder with a new tag
                # replaces it): drop the script's bookkeeping, or its lease would bring it back.
                self.qos._remove_from_indices(recorded).execute()
            deliveries.append((payload, queue))
        return deliveries


class RedisTransport(GuardedRedisTransport):
    """The Redis transport with :class:`BatchedChannel`; selected by ``broker_transport``."""

    Channel = BatchedChannel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle = WakeablePoller()
