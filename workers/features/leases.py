"""The lease: live workers keep their jobs; a dead worker's jobs return within a minute.

kombu's Redis transport emulates acks: each delivered message sits in the hash ``unacked``
with its delivery time as its score in the sorted set ``unacked_index``; every worker sweeps
that index (``restore_visible``) and pushes back into the queue any message older than
``visibility_timeout``. One fixed timeout cannot serve both needs: an hour leaves a killed
worker's jobs invisible for an hour, a minute hands a two-minute job to a second worker.

jobq therefore uses a short timeout (``JOBQ_VISIBILITY_TIMEOUT``, 30 s) as a *lease*, and each
live worker renews it: every ``JOBQ_LEASE_RENEW_INTERVAL`` seconds (10 s) it sets the score of
every delivery it still holds (running, prefetched, waiting for a retry countdown) to now,
with ``ZADD XX`` so a message acked meanwhile is not brought back. The renewal runs on the
consumer's timer, in the worker's main process, so it continues while prefork children compute.

What it gives (the numbers are the defaults):
* a worker killed outright (OOM, SIGKILL, lost host) stops renewing; its jobs, prefetched ones
  included, are back in the queue within visibility_timeout + restore_interval (≈35 s, < 60 s);
* a job running for minutes on a live worker is never handed out again;
* duplicates remain possible (delivery is at least once): a worker cut off from Redis for
  longer than the lease, or a gevent worker whose hub is blocked that long by a CPU-bound job,
  loses its lease and the job may run again elsewhere. Use ``submit(..., key=...)`` and
  idempotent effects.

Example (installed for every worker by :func:`install`, from workers/app.py)::

    $ JOBQ_VISIBILITY_TIMEOUT=30 JOBQ_LEASE_RENEW_INTERVAL=10 jobq worker cpu
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Celery, bootsteps
from kombu.transport import virtual

from workers.settings import Settings, get_settings

log = logging.getLogger(__name__)


def held_delivery_tags(consumer: Any) -> list[str]:
    """Delivery tags this worker has received and not yet acknowledged."""
    qos = consumer.task_consumer.channel.qos
    dirty = set(getattr(qos, "_dirty", ()))
    return [tag for tag in list(qos._delivered) if tag not in dirty]


def renew_leases(consumer: Any) -> int:
    """Set the lease of every held delivery to now; return how many were renewed."""
    channel = consumer.task_consumer.channel
    tags = held_delivery_tags(consumer)
    if not tags:
        return 0
    now = time.time()
    with channel.conn_or_acquire() as client:
        # XX: update only; a message acked since the snapshot must not reappear in the index.
        return int(client.zadd(channel.unacked_index_key, dict.fromkeys(tags, now), xx=True) or 0)


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
    """Consumer bootstep renewing held leases and restoring expired ones, on the consumer's timer.

    kombu sweeps expired leases on its own only in the event-loop path (prefork); a gevent
    worker runs the synchronous loop, where kombu sweeps only when a poll times out with no
    reply, which an idle worker's BRPOP (1 s) never lets happen: measured, a killed worker's
    jobs stayed in ``unacked`` for minutes with only gevent workers alive. So every worker
    sweeps here too, every ``JOBQ_RESTORE_INTERVAL`` seconds (a Redis mutex keeps sweeps apart).
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self.timer_entries: list[Any] = []

    def start(self, parent: Any) -> None:
        settings = get_settings()
        if settings.lease_renew_interval >= settings.visibility_timeout:
            log.warning(
                "JOBQ_LEASE_RENEW_INTERVAL (%ss) >= JOBQ_VISIBILITY_TIMEOUT (%ss): leases will "
                "expire between renewals and jobs may run twice",
                settings.lease_renew_interval,
                settings.visibility_timeout,
            )
        self.timer_entries = [
            parent.timer.call_repeatedly(
                settings.lease_renew_interval, self._renew, (parent,), priority=10
            ),
            parent.timer.call_repeatedly(
                settings.restore_interval, self._restore, (parent,), priority=10
            ),
        ]

    def _renew(self, parent: Any) -> None:
        try:
            renewed = renew_leases(parent)
            log.debug("renewed %d lease(s)", renewed)
        except Exception:  # during a reconnect the channel is gone; the next tick retries
            log.warning("could not renew leases", exc_info=True)

    def _restore(self, parent: Any) -> None:
        try:
            restore_expired(parent)
        except Exception:
            log.warning("could not restore expired leases", exc_info=True)

    def stop(self, parent: Any) -> None:
        for entry in self.timer_entries:
            entry.cancel()
        self.timer_entries = []

    shutdown = stop


def install(app: Celery, settings: Settings) -> None:
    """Renew held leases and restore expired ones in every worker of ``app``."""
    app.steps["consumer"].add(LeaseRenewal)
