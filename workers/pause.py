"""The kill switch: pause a pool so that none of its workers takes new jobs; resume it later.

``jobq pause io`` does two things:

* it sets a persistent flag, ``jobq:paused:io``, in Redis;
* it broadcasts the ``jobq_pause`` remote-control command: every worker started for that pool's
  queue stops consuming it (Celery's ``cancel_task_queue``, what ``celery control
  cancel_consumer`` does). Jobs in flight finish; jobs it had already prefetched run too (with
  acks late they are at most concurrency x prefetch multiplier). Producers keep enqueueing, up to
  the queue's high-water mark.

The flag is what makes the pause hold: a worker that starts while its pool is paused drops the
queue before it consumes anything (``celeryd_after_setup``, before the consumer starts), and
every worker re-checks the flag every few seconds, so one that missed the broadcast (restarting,
partitioned) converges too. ``jobq resume io`` deletes the flag and broadcasts ``jobq_resume``
(Celery's ``add_task_queue``), to the workers that were started for that queue only, so a CPU
worker never starts taking I/O jobs.

Example::

    $ jobq pause io        # io workers finish what they hold, then idle
    $ jobq resume io
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from celery.bootsteps import RUN
from celery.signals import celeryd_after_setup, worker_ready, worker_shutdown
from celery.worker.control import control_command

from workers.pools import POOLS
from workers.redis_client import get_redis

PAUSE_PREFIX = "jobq:paused:"
# How often each worker re-reads the flags (covers missed broadcasts and restarts).
RECONCILE_INTERVAL = 2.0

log = logging.getLogger(__name__)


class UnknownPool(ValueError):
    """Not one of the pools (io, cpu)."""


def _queue_of(pool: str) -> str:
    if pool not in POOLS:
        raise UnknownPool(f"unknown pool {pool!r} (pools: {', '.join(sorted(POOLS))})")
    return POOLS[pool].queue


def is_paused(pool: str) -> bool:
    return bool(get_redis().exists(PAUSE_PREFIX + pool))


def paused_pools() -> dict[str, dict[str, Any]]:
    """The paused pools and since when: ``{"io": {"since": 1700000000.0}}``."""
    client = get_redis()
    names = sorted(POOLS)
    values = client.mget([PAUSE_PREFIX + name for name in names])
    return {name: json.loads(value) for name, value in zip(names, values, strict=True) if value}


def pause(pool: str, *, timeout: float = 1.0, settle: float = 10.0) -> list[str]:
    """Pause ``pool``; return the workers that stopped consuming.

    Workers answer within ``timeout`` seconds; the cancel itself runs in each worker's consumer
    loop, so this then waits (up to ``settle`` seconds) until they report no longer consuming.
    """
    queue = _queue_of(pool)
    get_redis().set(PAUSE_PREFIX + pool, json.dumps({"since": time.time()}))
    nodes = _broadcast("jobq_pause", queue, timeout)
    return _wait_applied(queue, nodes, consuming=False, settle=settle)


def resume(pool: str, *, timeout: float = 1.0, settle: float = 10.0) -> list[str]:
    """Resume ``pool``; return the workers that consume its queue again (see :func:`pause`)."""
    queue = _queue_of(pool)
    get_redis().delete(PAUSE_PREFIX + pool)
    nodes = _broadcast("jobq_resume", queue, timeout)
    return _wait_applied(queue, nodes, consuming=True, settle=settle)


def _wait_applied(queue: str, nodes: list[str], *, consuming: bool, settle: float) -> list[str]:
    from workers.app import app

    deadline = time.monotonic() + settle
    pending = set(nodes)
    while pending and time.monotonic() < deadline:
        answers = app.control.inspect(destination=sorted(pending), timeout=0.5).active_queues()
        for node, queues in (answers or {}).items():
            if (queue in {q["name"] for q in queues}) == consuming:
                pending.discard(node)
        if pending:
            time.sleep(0.1)
    return sorted(set(nodes) - pending)


def _broadcast(command: str, queue: str, timeout: float) -> list[str]:
    from workers.app import app

    replies = app.control.broadcast(
        command, arguments={"queue": queue}, reply=True, timeout=timeout
    )
    confirmed = []
    for reply in replies or []:
        for node, answer in reply.items():
            if isinstance(answer, dict) and answer.get("ok") == "done":
                confirmed.append(node)
    return sorted(confirmed)


# --- inside every worker -------------------------------------------------------------------

# The queues this worker was started for (-Q), remembered before a pause can deselect them.
_own_queues: set[str] = set()
# The queues this worker stopped because of a jobq pause: resume gives back only these, so a
# consumer cancelled some other way (celery control cancel_consumer, a shutdown) stays cancelled.
_paused_here: set[str] = set()
_consumer: Any = None


def _paused_queues() -> set[str]:
    return {POOLS[pool].queue for pool in paused_pools()}


@celeryd_after_setup.connect
def _drop_paused_queues_at_start(instance: Any = None, **_: Any) -> None:
    # Runs after -Q is applied and before the consumer starts: a worker started during a pause
    # must not fetch even one job.
    if instance is None:
        return
    queues = instance.app.amqp.queues
    _own_queues.update(queues.consume_from)
    try:
        paused = _paused_queues()
    except Exception:  # Redis not up yet: the reconciler applies the flag once it is
        log.warning("could not read the pause flags at start", exc_info=True)
        return
    for queue in sorted(paused & _own_queues):
        log.warning("pool of queue %r is paused (jobq resume): not consuming it", queue)
        queues.deselect(queue)
        _paused_here.add(queue)


def _consuming(consumer: Any, queue: str) -> bool:
    task_consumer = getattr(consumer, "task_consumer", None)
    return bool(task_consumer is not None and task_consumer.consuming_from(queue))


def _apply(consumer: Any, queue: str, paused: bool) -> None:
    """Make ``consumer`` stop or start consuming ``queue`` (in its own event loop)."""
    if queue not in _own_queues or getattr(consumer, "task_consumer", None) is None:
        return  # not ours, or the consumer is (re)connecting: the reconciler comes back later
    if getattr(consumer.blueprint, "state", RUN) != RUN:
        return  # shutting down: never start consuming again
    if paused and _consuming(consumer, queue):
        _paused_here.add(queue)
        consumer.call_soon(consumer.cancel_task_queue, queue)
    elif not paused and queue in _paused_here and not _consuming(consumer, queue):
        _paused_here.discard(queue)
        consumer.call_soon(consumer.add_task_queue, queue)


@control_command(args=[("queue", str)], signature="<queue>")
def jobq_pause(state: Any, queue: str, **_: Any) -> dict[str, str]:
    """Stop consuming ``queue`` if this worker serves it (jobq pause)."""
    if queue not in _own_queues:
        return {"ok": "not serving " + queue}
    _apply(state.consumer, queue, paused=True)
    return {"ok": "done"}


@control_command(args=[("queue", str)], signature="<queue>")
def jobq_resume(state: Any, queue: str, **_: Any) -> dict[str, str]:
    """Consume ``queue`` again if this worker was started for it (jobq resume)."""
    if queue not in _own_queues:
        return {"ok": "not serving " + queue}
    _apply(state.consumer, queue, paused=False)
    return {"ok": "done"}


class _Reconciler(threading.Thread):
    def __init__(self) -> None:
        super().__init__(name="jobq-pause-reconciler", daemon=True)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(RECONCILE_INTERVAL):
            try:
                paused = _paused_queues()
            except Exception:  # Redis away: keep the current state, try again later
                log.debug("could not read the pause flags", exc_info=True)
                continue
            for queue in _own_queues:
                _apply(_consumer, queue, paused=queue in paused)


_reconciler: _Reconciler | None = None


@worker_ready.connect
def _start_reconciler(sender: Any = None, **_: Any) -> None:
    global _consumer, _reconciler
    _consumer = sender
    _reconciler = _Reconciler()
    _reconciler.start()


@worker_shutdown.connect
def _stop_reconciler(**_: Any) -> None:
    if _reconciler is not None:
        _reconciler.stopping.set()
