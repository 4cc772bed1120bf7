"""jobq's Redis transport: kombu's, receiving and acknowledging messages in batches.

kombu's Redis transport costs a consumer two round trips per message before the job starts, a
wait (jobq's channel, workers/broker/take.py: a BLMOVE that takes nothing; kombu's: BRPOP),
then the take and its unacked bookkeeping (ZADD ``unacked_index`` + HSET ``unacked``), and one
more to acknowledge it (ZREM + HDEL). On a gevent worker running short I/O jobs these were over a
third of the worker's CPU (py-spy, docs/benchmarks.md). This transport keeps kombu's keys,
message format and lease semantics (any kombu/Celery client and worker still interoperate) and
changes how many round trips they take:

* **Batched fetch.** When the wait says a message is ready, the take script pops up to
  :data:`FETCH_BATCH` + 1 ready messages (never past the prefetch limit), recording each in
  ``unacked`` in the same atomic step (workers/broker/take.py; one message per take with the
  fast paths off). An idle worker still blocks in Redis: no polling.
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
``QoS._delivered``, ``MultiChannelPoller``); with the switch off, workers use
:class:`~workers.broker.envelopes.GuardedChannel`: the same atomic take
(:mod:`workers.broker.take`), one message at a time, and kombu's own acks (without ``MULTI``).

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
from kombu.utils.eventio import READ

from workers.broker.envelopes import GuardedChannel, GuardedRedisTransport
from workers.broker.take import RecordingQoS
from workers.features import group_commit

# Most messages one take adds to the first: large enough to amortize the round trip, small
# enough that one worker does not drain a short queue its peers could share.
FETCH_BATCH = 32


class BatchedQoS(RecordingQoS):
    """kombu's Redis QoS as the take script left it (recorded deliveries), acks batched."""

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
            # sends its wait again now that the window has room.
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

    @contextlib.contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        # kombu builds a new redis-py client object for every publish and ack (~0.4 ms each:
        # it copies ~300 response callbacks); one per channel, on the same pool, does the same.
        if client is None:
            client = self.__dict__.get("_jobq_client")
            if client is None:
                client = self.__dict__["_jobq_client"] = self._create_client()
        yield client

    def take_limit(self) -> int:
        """Up to FETCH_BATCH + 1 messages per take, never past the prefetch window."""
        limit = self.qos.can_consume_max_estimate()
        return FETCH_BATCH + 1 if limit is None else max(1, min(FETCH_BATCH + 1, limit))


class RedisTransport(GuardedRedisTransport):
    """The Redis transport with :class:`BatchedChannel`; selected by ``broker_transport``."""

    Channel = BatchedChannel

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cycle = WakeablePoller()
