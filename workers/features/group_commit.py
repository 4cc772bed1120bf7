"""Group commit: a gevent worker's per-job Redis writes go out together, a round trip per batch.

Every finished job used to cost a gevent worker three Redis round trips of its own: the result
(a Lua call), the job record with its statistics (a pipeline) and the ack (kombu's ZREM+HDEL
pipeline). With a hundred jobs finishing in the same turn of the event loop that is three
hundred round trips, each a few hundred microseconds of Python. Here a job's greenlet only
queues its writes; one flusher greenlet, woken by the first write, lets every other ready
greenlet run (``gevent.sleep(0)``) and then sends everything queued meanwhile:

1. results and job records as one ``MULTI``/``EXEC`` transaction, so a client woken by a
   result's PUBLISH always finds the job record too;
2. then the acks (one ZREM and one HDEL for all of them).

Under load a batch holds tens of jobs; when idle a write goes out at once, so nothing waits on
a timer. What it does **not** change: a job is acknowledged only after its result and record
are stored (if Redis cannot be reached, the acks of that batch are dropped and the jobs run
again when their lease expires: delivery stays at least once). A worker killed outright loses
at most the batch in flight, i.e. those jobs run again. Prefork workers keep Celery's direct
writes: their results are written in the child processes.

One job's write cannot take its batch down: if the batch fails for any other reason than an
unreachable Redis (a write that raises while it is queued, a value redis-py cannot encode),
each job's writes are sent again on their own, the failing ones are logged with their job id
and skipped, and every ack of the batch is sent. Running such a job again would fail the same
way, at every lease, for ever.

Installed by :class:`GroupCommitStep` on gevent workers (with ``JOBQ_FAST_PATHS`` on);
:func:`active` tells the writers (``workers/broker/result_backend.py``,
``workers/features/job_records.py``, the transport's QoS) whether to queue.

Example::

    commit = active()
    if commit is not None:
        commit.write(lambda pipe: pipe.hset("jobq:job:1", mapping=record), "job record 1")
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import redis
from celery import Celery, bootsteps

from workers.broker.take import refusal
from workers.pools import is_gevent_pool
from workers.settings import Settings
from workers.stores.client import get_redis

log = logging.getLogger(__name__)

Write = Callable[[Any], None]  # adds commands to a redis-py pipeline
Labelled = tuple[Write, str]  # a write and what it is for (in log lines), e.g. "job record 6f1c"
# A batch that cannot be written is retried with growing pauses for about this long (a Redis
# restart or failover); then its writes and acks are dropped and its jobs run again later.
RETRY_FOR_SECONDS = 30.0
RETRYABLE = (redis.ConnectionError, redis.TimeoutError)


def retryable(exc: BaseException) -> bool:
    """True for a Redis that is away or refuses writes for now (full, read-only, cannot persist).

    Such a batch is retried whole and, if that runs out, neither written nor acked: its jobs come
    back with their lease. Any other error is one job's own, written around.
    """
    return isinstance(exc, RETRYABLE) or refusal(exc) is not None


_active: GroupCommit | None = None


def active() -> GroupCommit | None:
    """The running group commit of this worker process, or None (write directly)."""
    return _active


class GroupCommit:
    """Queue per-job writes and acks; a flusher greenlet sends them in batches.

    ``client`` writes results and records; acks go through each QoS's own broker channel.
    """

    def __init__(self, client: redis.Redis) -> None:
        import gevent.event

        self.client = client
        self._writes: list[Labelled] = []
        self._acks: list[tuple[Any, str]] = []
        self._wake = gevent.event.Event()
        self._flusher: Any = None
        self._stopping = False
        self.batches = 0  # flushed batches, for tests and the profile

    def write(self, write: Write, label: str = "a write") -> None:
        """Queue ``write(pipeline)`` for the next batch (results and records).

        ``label`` names it in the log if it fails on its own: ``"job record 6f1c…"``.
        """
        self._writes.append((write, label))
        self._wake.set()

    def ack(self, qos: Any, delivery_tag: str) -> None:
        """Queue the Redis side of an ack (kombu's ZREM+HDEL) for the next batch.

        ``qos`` is a :class:`workers.broker.batched.BatchedQoS`: once the batch is sent (or given
        up), ``qos.release(tags)`` lets the deliveries leave its prefetch window.
        """
        self._acks.append((qos, delivery_tag))
        self._wake.set()

    def start(self) -> None:
        import gevent

        global _active
        self._stopping = False
        if self._flusher is None:
            self._flusher = gevent.spawn(self._run)
        _active = self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop queueing (later writes go direct) and send what is queued."""
        global _active
        if _active is self:
            _active = None
        if self._flusher is not None:
            # Not kill(): a batch interrupted between taking its items and sending them is lost.
            self._stopping = True
            self._wake.set()
            self._flusher.join(timeout)
            self._flusher = None
        self.flush(retry_for=min(timeout, RETRY_FOR_SECONDS))

    def _run(self) -> None:
        import gevent

        me = gevent.getcurrent()
        # A flusher that outlived stop()'s join (Redis down mid-batch) ends after its batch
        # instead of running beside the next one.
        while not self._stopping and self._flusher is me:
            self._wake.wait()
            self._wake.clear()
            # Let every greenlet that is ready run first: their writes join this batch.
            gevent.sleep(0)
            try:
                self.flush()
            except Exception:  # never let the flusher die: log, and the next batch tries again
                log.exception("group commit: a batch failed")

    def flush(self, retry_for: float = RETRY_FOR_SECONDS) -> None:
        """Send every queued write, then every queued ack (in this order, one batch)."""
        writes, self._writes = self._writes, []
        acks, self._acks = self._acks, []
        if not writes and not acks:
            return
        self.batches += 1
        try:
            if writes and not self._with_retries(self._send_writes, writes, retry_for):
                log.error(
                    "group commit: dropped %d result/record write(s) and %d ack(s) after %.0f s "
                    "of Redis errors; those jobs will run again when their lease expires",
                    len(writes),
                    len(acks),
                    retry_for,
                )
                return
            if acks and not self._with_retries(self._send_acks, acks, retry_for):
                log.error(
                    "group commit: dropped %d ack(s); those jobs will run again when their lease "
                    "expires",
                    len(acks),
                )
        finally:
            # Sent or given up, these deliveries leave the prefetch window either way: a window
            # that never reopened would stop the worker for good.
            for qos, tags in _by_qos(acks):
                try:
                    qos.release(tags)
                except Exception:  # a channel closed meanwhile: nothing left to free there
                    log.warning(
                        "group commit: could not release %d ack(s)", len(tags), exc_info=True
                    )

    def _send_writes(self, writes: list[Labelled]) -> None:
        """All writes in one transaction; if that fails for a reason of its own, each alone."""
        try:
            self._send_together(writes)
        except Exception as exc:
            if retryable(exc):
                raise
            log.warning(
                "group commit: a batch of %d write(s) failed (%s: %s); writing each on its own",
                len(writes),
                type(exc).__name__,
                exc,
            )
            self._send_each(writes)

    def _send_together(self, writes: list[Labelled]) -> None:
        pipe = self.client.pipeline(transaction=True)
        for write, _ in writes:
            write(pipe)
        # raise_on_error=False: one bad command (say a key of the wrong type) must not undo the
        # other jobs' writes; it is logged below instead.
        _log_errors(pipe.execute(raise_on_error=False))
        writes.clear()

    def _send_each(self, writes: list[Labelled]) -> None:
        # Each write leaves the list once it is sent or given up: if Redis goes away halfway,
        # the retry sends only the rest, and no statistic is counted twice.
        while writes:
            write, label = writes[0]
            pipe = self.client.pipeline(transaction=True)
            try:
                write(pipe)
                _log_errors(pipe.execute(raise_on_error=False))
            except Exception as exc:
                if retryable(exc):
                    raise
                log.error(
                    "group commit: could not write %s (%s: %s); skipped, its job is acked",
                    label,
                    type(exc).__name__,
                    exc,
                )
            del writes[0]

    @staticmethod
    def _send_acks(acks: list[tuple[Any, str]]) -> None:
        for qos, tags in _by_qos(acks):
            with qos.channel.conn_or_acquire() as client:
                pipe = client.pipeline(transaction=False)
                pipe.zrem(qos.unacked_index_key, *tags)
                pipe.hdel(qos.unacked_key, *tags)
                pipe.execute()

    @staticmethod
    def _with_retries(
        send: Callable[[list[Any]], None], items: list[Any], retry_for: float
    ) -> bool:
        import gevent

        deadline = time.monotonic() + retry_for
        pause = 0.1
        while True:
            try:
                send(items)
                return True
            except Exception as exc:
                if not retryable(exc):
                    raise
                if time.monotonic() + pause > deadline:
                    return False
                log.warning(
                    "group commit: Redis unavailable or refusing writes (%s); retrying in %.1f s",
                    exc,
                    pause,
                )
                gevent.sleep(pause)
                pause = min(pause * 2, 2.0)


def _log_errors(replies: list[Any]) -> None:
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            log.error("group commit: a write failed: %s", reply)


def _by_qos(acks: list[tuple[Any, str]]) -> list[tuple[Any, list[str]]]:
    """Acks grouped by the QoS (channel) they belong to, in order."""
    groups: dict[int, tuple[Any, list[str]]] = {}
    for qos, tag in acks:
        groups.setdefault(id(qos), (qos, []))[1].append(tag)
    return list(groups.values())


class GroupCommitStep(bootsteps.StartStopStep):
    """Consumer bootstep: group-commit results, records and acks on gevent workers."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.commit: GroupCommit | None = None

    def start(self, parent: Any) -> None:
        if not is_gevent_pool(parent.pool):
            return  # prefork/solo/threads: Celery's direct writes
        if self.commit is None:
            self.commit = GroupCommit(get_redis())
        self.commit.start()

    def stop(self, parent: Any) -> None:
        if self.commit is not None:
            self.commit.stop()

    shutdown = stop


def install(app: Celery, settings: Settings) -> None:
    """Group-commit on ``app``'s gevent workers (needs the batched transport's QoS)."""
    app.steps["consumer"].add(GroupCommitStep)
