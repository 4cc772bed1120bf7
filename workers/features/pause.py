"""The kill switch, inside every worker: stop consuming a paused pool's queue, converge on the flag.

``jobq pause io`` (:mod:`ops.pausing`) sets the flag ``jobq:paused:io`` and broadcasts the
``jobq_pause`` remote-control command registered here: every worker started for that pool's
queue stops consuming it (Celery's ``cancel_task_queue``, what ``celery control
cancel_consumer`` does). Jobs in flight finish; jobs it had already prefetched run too (with
acks late they are at most concurrency x prefetch multiplier). Producers keep enqueueing, up to
the queue's high-water mark.

The flag is what makes the pause hold: a worker that starts while its pool is paused drops the
queue before it consumes anything (``celeryd_after_setup``, before the consumer starts), and
the :class:`PauseReconciler` bootstep re-reads the flags every few seconds, so a worker that
missed the broadcast (restarting, partitioned) converges too. ``jobq_resume`` gives a queue back
only to the workers that were started for it, so a CPU worker never starts taking I/O jobs.

Example::

    install(app, settings)      # from workers/app.py
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery
from celery.bootsteps import RUN
from celery.signals import celeryd_after_setup
from celery.worker.control import control_command

from workers.features.loops import LoopStep, LoopThread
from workers.settings import Settings
from workers.stores.pause_flags import paused_queues

# How often each worker re-reads the flags (covers missed broadcasts and restarts).
RECONCILE_INTERVAL = 2.0

log = logging.getLogger(__name__)

# The queues this worker was started for (-Q), remembered before a pause can deselect them.
_own_queues: set[str] = set()
# The queues this worker stopped because of a jobq pause: resume gives back only these, so a
# consumer cancelled some other way (celery control cancel_consumer, a shutdown) stays cancelled.
_paused_here: set[str] = set()


def _drop_paused_queues_at_start(instance: Any = None, **_: Any) -> None:
    # Runs after -Q is applied and before the consumer starts: a worker started during a pause
    # must not fetch even one job.
    if instance is None:
        return
    queues = instance.app.amqp.queues
    _own_queues.update(queues.consume_from)
    try:
        paused = paused_queues()
    except Exception:  # Redis not up yet: the reconciler applies the flag once it is
        log.warning("could not read the pause flags at start", exc_info=True)
        return
    for queue in sorted(paused & _own_queues):
        log.warning("pool of queue %r is paused (jobq resume): not consuming it", queue)
        queues.deselect(queue)
        _paused_here.add(queue)


def consuming(consumer: Any, queue: str) -> bool:
    """True while ``consumer`` (a worker's Celery consumer, or None) consumes ``queue``."""
    task_consumer = getattr(consumer, "task_consumer", None)
    return bool(task_consumer is not None and task_consumer.consuming_from(queue))


def _apply(consumer: Any, queue: str, paused: bool) -> None:
    """Make ``consumer`` stop or start consuming ``queue`` (in its own event loop)."""
    if queue not in _own_queues or getattr(consumer, "task_consumer", None) is None:
        return  # not ours, or the consumer is (re)connecting: the reconciler comes back later
    if getattr(consumer.blueprint, "state", RUN) != RUN:
        return  # shutting down: never start consuming again
    if paused and consuming(consumer, queue):
        _paused_here.add(queue)
        consumer.call_soon(consumer.cancel_task_queue, queue)
    elif not paused and queue in _paused_here and not consuming(consumer, queue):
        _paused_here.discard(queue)
        consumer.call_soon(consumer.add_task_queue, queue)


def jobq_pause(state: Any, queue: str, **_: Any) -> dict[str, str]:
    """Stop consuming ``queue`` if this worker serves it (jobq pause)."""
    if queue not in _own_queues:
        return {"ok": "not serving " + queue}
    _apply(state.consumer, queue, paused=True)
    return {"ok": "done"}


def jobq_resume(state: Any, queue: str, **_: Any) -> dict[str, str]:
    """Consume ``queue`` again if this worker was started for it (jobq resume)."""
    if queue not in _own_queues:
        return {"ok": "not serving " + queue}
    _apply(state.consumer, queue, paused=False)
    return {"ok": "done"}


class _ReconcilerThread(LoopThread):
    def __init__(self, consumer: Any) -> None:
        super().__init__("jobq-pause-reconciler")
        self.consumer = consumer

    def run(self) -> None:
        while not self.stopping.wait(RECONCILE_INTERVAL):
            try:
                paused = paused_queues()
            except Exception:  # Redis away: keep the current state, try again later
                log.debug("could not read the pause flags", exc_info=True)
                continue
            for queue in _own_queues:
                _apply(self.consumer, queue, paused=queue in paused)


class PauseReconciler(LoopStep):
    """Consumer bootstep: apply the pause flags every few seconds while the consumer runs."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def make_thread(self, parent: Any) -> LoopThread:
        return _ReconcilerThread(parent)


def install(app: Celery, settings: Settings) -> None:
    """Register the pause commands, the start-up check and the reconciler for ``app``'s workers."""
    command = control_command(args=[("queue", str)], signature="<queue>")
    command(jobq_pause)
    command(jobq_resume)
    celeryd_after_setup.connect(
        _drop_paused_queues_at_start, weak=False, dispatch_uid="jobq.pause.at_start"
    )
    app.steps["consumer"].add(PauseReconciler)
