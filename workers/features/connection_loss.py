"""Running jobs outlive a lost broker connection: a Redis restart or blip kills none of them.

When the consumer's connection to Redis breaks, Celery closes it and connects again. Left to
itself it would (a) cancel every running acks-late job (``worker_cancel_long_running_tasks_on_
connection_loss``: greenlets killed, prefork children terminated) and (b) on closing the old
channel, push every message it still held back into the queue, running jobs included, if Redis
is reachable again by then; and the jobs that kept running would be acked through a closed
channel and have their leases renewed by nobody. So a Redis restart killed or duplicated every
running job, and each kill counted toward the job's delivery limit.

jobq sets the cancel option off (workers/app.py) and, here:

1. :func:`detach_running`, called by the consumer just before Celery closes the broken
   connection, takes the deliveries of running jobs out of the old channel's books, so closing
   it does not requeue them (prefetched jobs that never started are still handed back);
2. :class:`AdoptRunning`, a consumer bootstep, moves them onto the new channel once connected:
   their acks go through it, its prefetch window counts them, the lease renewal
   (workers/features/leases.py) covers them, and a job that finished while Redis was away is
   acknowledged now.

The lease still covers a real partition: a worker cut off for longer than the lease loses its
jobs to other workers, as before.

Example (wired by :func:`install` from workers/app.py; the consumer calls the hook)::

    $ redis-cli shutdown && redis-server ...     # running jobs go on and complete once
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from celery import Celery, bootsteps
from celery.exceptions import CPendingDeprecationWarning
from celery.worker.state import active_requests
from kombu.transport import virtual

from workers.features.leases import renew_held
from workers.settings import Settings

log = logging.getLogger(__name__)

# Deliveries of jobs that were running when the connection broke, until the new channel adopts
# them. Only the consumer's own thread touches it (the main process, or the gevent hub).
_detached: list[Any] = []


def detach_running(consumer: Any) -> int:
    """Take running jobs' deliveries out of the old channel, so closing it keeps them unacked.

    Called by the consumer (workers/broker/consumer.py) when its connection broke, before Celery
    closes the connection. Returns how many deliveries were taken.
    """
    taken = 0
    for request in tuple(active_requests):
        message = request.message
        if message is None or request.acknowledged or not request.task.acks_late:
            continue
        qos = getattr(message.channel, "qos", None)
        delivered = getattr(qos, "_delivered", None)
        if delivered is None or delivered.pop(message.delivery_tag, None) is None:
            continue
        _detached.append(request)
        taken += 1
    if taken:
        log.warning(
            "connection to Redis lost: %d running job(s) keep running and are acknowledged "
            "after the reconnect",
            taken,
        )
    return taken


def adopt_detached(consumer: Any) -> int:
    """Move detached deliveries onto the consumer's new channel; return how many moved."""
    channel = consumer.task_consumer.channel
    adopted = 0
    while _detached:  # one at a time: if Redis breaks again, the rest wait for the next connect
        request = _detached[0]
        message = request.message
        message.channel = channel
        if getattr(request, "left_to_lease", False):
            pass  # left unacknowledged on purpose (workers/registry/request.py): its lease decides
        elif request.acknowledged and not message.acknowledged:
            # The job ended while Redis was away and its ack could not be written: write it now.
            message.ack()
        elif not request.acknowledged:
            virtual.QoS.append(channel.qos, message, message.delivery_tag)  # in memory only
        _detached.pop(0)
        adopted += 1
    return adopted


class AdoptRunning(bootsteps.StartStopStep):
    """Consumer bootstep: after a reconnect, the new channel takes over the running jobs."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, parent: Any) -> None:
        if not _detached:
            return
        try:
            adopted = adopt_detached(parent)
            # Renew at once: the leases aged while Redis was away.
            renew_held(parent)
        except Exception:  # the new connection broke already; the next reconnect tries again
            log.warning("could not adopt the running jobs after a reconnect", exc_info=True)
            return
        log.info("reconnected: %d running job(s) kept", adopted)


def install(app: Celery, settings: Settings) -> None:
    """Keep running jobs across a lost broker connection (the consumer calls the detach hook)."""
    app.steps["consumer"].add(AdoptRunning)
    # Celery warns at every connection loss that it will cancel running jobs by default one
    # day; jobq turned that off on purpose (workers/app.py), so the warning would only mislead.
    warnings.filterwarnings(
        "ignore", message=r"\s*In Celery 5.1 we introduced", category=CPendingDeprecationWarning
    )
