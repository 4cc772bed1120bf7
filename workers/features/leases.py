"""The lease: live workers keep their jobs; a dead worker's jobs return within a minute.

kombu's Redis transport emulates acks: each delivered message sits in the hash ``unacked``
with its delivery time as its score in the sorted set ``unacked_index``; every worker sweeps
that index (``restore_visible``) and pushes back into the queue any message older than
``visibility_timeout``. One fixed timeout cannot serve both needs: an hour leaves a killed
worker's jobs invisible for an hour, a minute hands a two-minute job to a second worker.

jobq therefore uses a short timeout (``JOBQ_VISIBILITY_TIMEOUT``, 30 s) as a *lease*, and each
live worker renews it: every ``JOBQ_LEASE_RENEW_INTERVAL`` seconds (10 s) it sets the score of
every delivery it still holds (running, prefetched, waiting for a retry countdown) to now,
with ``ZADD XX`` so a message acked meanwhile is not brought back. "Now" is Redis's clock, in
every lease script and in the sweep (workers/broker/lease_clock.py): hosts whose clocks
disagree still agree on who holds what.

The renewal runs in a :class:`LeaseKeeper`, an OS thread of the worker's main process with
its own Redis connection, from the consumer's first start until Celery has sent
``worker_shutdown``, that is after the pool has drained. So it goes on

* while prefork children compute, and while a warm shutdown (SIGTERM) waits for the jobs still
  running: the consumer has stopped by then, and its timer with it;
* while a gevent job computes without yielding: the hub, and every timer and greenlet with it,
  is blocked, an OS thread is not (Python switches threads every few milliseconds). A single
  C call that holds the GIL for longer than the lease (one huge regex) still stops it.

What it gives (the numbers are the defaults):
* a worker killed outright (OOM, SIGKILL, lost host) stops renewing; its jobs, prefetched ones
  included, are back in the queue within visibility_timeout + restore_interval (≈35 s, < 60 s);
* a job running for minutes on a live or warm-stopping worker is never handed out again;
* duplicates remain possible (delivery is at least once): a worker cut off from Redis for
  longer than the lease loses its lease and the job may run again elsewhere. Use
  ``submit(..., key=...)`` and idempotent effects.

Example (installed for every worker by :func:`install`, from workers/app.py)::

    $ JOBQ_VISIBILITY_TIMEOUT=30 JOBQ_LEASE_RENEW_INTERVAL=10 jobq worker cpu
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from celery import Celery, bootsteps
from celery.signals import worker_shutdown
from kombu.transport import virtual

from workers.broker.lease_clock import RENEW_LEASES, renew_leases
from workers.features import cancellation
from workers.pools import os_sleep, start_os_thread
from workers.settings import Settings, get_settings
from workers.stores import cancels

log = logging.getLogger(__name__)


def held_delivery_tags(qos: Any) -> list[str]:
    """Delivery tags a channel's QoS has received and not yet acknowledged."""
    for _ in range(3):
        try:
            dirty = set(getattr(qos, "_dirty", ()))
            return [tag for tag in list(qos._delivered) if tag not in dirty]
        except RuntimeError:  # changed during the copy (read from another thread): again
            continue
    return []


def renew_held(consumer: Any) -> int:
    """Renew every lease ``consumer`` holds now, on its own channel; how many were renewed.

    For the consumer's own thread (after a reconnect: the leases aged while Redis was away); the
    :class:`LeaseKeeper` renews on its own client, in its own thread::

        renew_held(consumer)    # -> 3
    """
    channel = consumer.task_consumer.channel
    with channel.conn_or_acquire() as client:
        return renew_leases(client, channel.unacked_index_key, held_delivery_tags(channel.qos))


class LeaseKeeper:
    """An OS thread renewing the leases its worker holds, every ``interval`` seconds.

    It reads the deliveries from the consumer's current channel (a reconnect replaces it) and
    writes with a client of its own: under gevent the channel's sockets belong to the hub.
    Started once per worker by :class:`LeaseRenewal`, stopped by :func:`stop_renewing`::

        keeper = LeaseKeeper(consumer, interval=10.0)
        keeper.start()      # renews every 10 s from now on
        keeper.stop()       # after the pool has drained
    """

    def __init__(self, consumer: Any, interval: float) -> None:
        self.consumer = consumer
        self.interval = interval
        self.running = True
        channel = consumer.task_consumer.channel
        # Built here, in the main thread (under gevent, imports from two threads can deadlock);
        # it connects on first use, in the keeper's thread.
        pool = redis.ConnectionPool(**channel._connparams())
        self.client = channel.Client(connection_pool=pool)

    def start(self) -> None:
        start_os_thread(self._run)

    def stop(self) -> None:
        self.running = False

    def _run(self) -> None:
        while self.running:
            os_sleep(self.interval)
            if self.running:
                self.renew()

    def renew(self) -> int:
        """Renew every held lease now; how many were renewed.

        The same round trip asks which held jobs are cancelled (one ``MGET``), for
        :mod:`workers.features.cancellation`: a held job learns of its cancel within one interval.
        """
        task_consumer = self.consumer.task_consumer
        if task_consumer is None:  # between a lost connection and the reconnect
            return 0
        channel = task_consumer.channel
        try:
            tags = held_delivery_tags(channel.qos)
            if not tags:
                return 0
            ids = cancellation.held_job_ids(channel.qos, tags)
            pipe = self.client.pipeline(transaction=False)
            RENEW_LEASES.queue(pipe, keys=[channel.unacked_index_key], args=tags)
            cancels.queue_lookup(pipe, ids)
            replies = pipe.execute()
            if ids:
                cancellation.learned(cancels.cancelled_of(ids, replies[1]))
            return int(replies[0])
        except Exception:  # Redis unreachable for now: the next round retries
            log.warning("could not renew leases", exc_info=True)
            return 0


_keepers: list[LeaseKeeper] = []


def leave_to_lease(message: Any) -> None:
    """Forget a delivery on this worker without acknowledging it: its lease brings it back.

    For a job whose end cannot be recorded (Redis unreachable, its dead letter not stored): its
    entry stays in ``unacked``, this worker stops renewing it, and once the lease expires any
    worker's sweep puts it back in its queue.

    Example::

        leave_to_lease(request.message)     # back in the queue ≈ JOBQ_VISIBILITY_TIMEOUT later
    """
    qos = message.channel.qos
    release = getattr(qos, "release", None)  # the batched QoS also wakes a waiting consumer
    if release is not None:
        release([message.delivery_tag])
    else:
        virtual.QoS.ack(qos, message.delivery_tag)  # kombu's in-memory half of an ack only


def restore_expired(consumer: Any) -> None:
    """Push deliveries whose lease expired (any worker's) back into their queues."""
    channel = consumer.task_consumer.channel
    channel.qos.restore_visible(num=channel.unacked_restore_limit, interval=1)


class LeaseRenewal(bootsteps.StartStopStep):
    """Consumer bootstep: starts the :class:`LeaseKeeper`, sweeps expired leases on a timer.

    kombu sweeps expired leases on its own only in the event-loop path (prefork); a gevent
    worker runs the synchronous loop, where kombu sweeps only when a poll times out with no
    reply, which an idle worker's BRPOP (1 s) never lets happen: measured, a killed worker's
    jobs stayed in ``unacked`` for minutes with only gevent workers alive. So every worker
    sweeps here too, every ``JOBQ_RESTORE_INTERVAL`` seconds (a Redis mutex keeps sweeps apart).
    The sweep stops with the consumer; the renewal does not (see the module docstring).
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.sweep: Any = None

    def start(self, parent: Any) -> None:
        settings = get_settings()
        if settings.lease_renew_interval >= settings.visibility_timeout:
            log.warning(
                "JOBQ_LEASE_RENEW_INTERVAL (%ss) >= JOBQ_VISIBILITY_TIMEOUT (%ss): leases will "
                "expire between renewals and jobs may run twice",
                settings.lease_renew_interval,
                settings.visibility_timeout,
            )
        if not _keepers:  # once per worker: a reconnect restarts this step, not the keeper
            keeper = LeaseKeeper(parent, settings.lease_renew_interval)
            _keepers.append(keeper)
            keeper.start()
        self.sweep = parent.timer.call_repeatedly(
            settings.restore_interval, self._restore, (parent,), priority=10
        )

    def _restore(self, parent: Any) -> None:
        try:
            restore_expired(parent)
        except Exception:
            log.warning("could not restore expired leases", exc_info=True)

    def stop(self, parent: Any) -> None:
        if self.sweep is not None:
            # gevent's timer returns the first run's greenlet, which holds the repeating entry:
            # only cancelling that entry ends the repetition.
            getattr(self.sweep, "entry", self.sweep).cancel()
            self.sweep = None

    shutdown = stop


def stop_renewing(**_: Any) -> None:
    """``worker_shutdown`` handler: the pool has drained, no job is left to keep."""
    while _keepers:
        _keepers.pop().stop()


def install(app: Celery, settings: Settings) -> None:
    """Renew held leases and restore expired ones in every worker of ``app``."""
    app.steps["consumer"].add(LeaseRenewal)
    worker_shutdown.connect(stop_renewing, weak=False, dispatch_uid="jobq.leases.keeper")
