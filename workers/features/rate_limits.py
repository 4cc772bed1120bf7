"""Rate limits on the worker: wait for a job's turn, park it in Redis, move it back when due.

Every jobq job calls :func:`wait_for_turn` before its body (``JobTask.__call__``). A turn at most
``JOBQ_IO_RATE_MAX_PARK`` seconds away (``JOBQ_CPU_RATE_MAX_PARK`` on prefork) is waited for in
place; a later one parks the message in ``jobq:delayed:<queue>`` (its turn in
``jobq:turn:<job id>``) and acknowledges the delivery, so a long rate-limited backlog holds no
worker slot and no prefetch. The :class:`RateLimitMover` bootstep of every worker puts due jobs
back on the queues that worker consumes, not on a paused one, and only while the queue is below
its high-water mark (the admission gate). The schedules themselves live in
Redis (:mod:`workers.stores.rate_limits`).

Example::

    install(app, settings)      # from workers/app.py: adds the mover to every worker
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from celery import Celery, Task, signature
from celery.exceptions import Ignore
from kombu.utils.json import dumps, loads

from workers.features.loops import LoopStep, LoopThread
from workers.features.pause import consuming
from workers.keys import (
    DELAYED_PREFIX,
    PARKED_HEADER,
    QUEUE_ATTRIBUTE,
    RATE_ATTRIBUTE,
    RATE_KEY_ATTRIBUTE,
    RATE_STATS_KEY,
)
from workers.pools import POOLS
from workers.settings import Settings, get_settings
from workers.stores.client import get_redis
from workers.stores.pause_flags import paused_queues
from workers.stores.rate_limits import (
    MOVER_BATCH,
    effective_rate,
    forget_parked,
    keep_turn,
    read_overrides,
    reserve_turn,
    seconds_until_next_due,
    take_due,
)
from workers.stores.scheduled import move_scheduled

log = logging.getLogger(__name__)

# How often run-time limits are re-read from Redis in each worker process.
LIMITS_REFRESH_SECONDS = 1.0
# How often each worker's mover looks for parked jobs whose turn has come.
MOVER_INTERVAL = 0.05
# An idle mover looks again after at most this long: a job parked while it sleeps comes back up
# to this late, together with the others that became due meanwhile (they then run together).
MOVER_IDLE_MAX = 0.25


class _LimitCache:
    """Run-time limits, re-read from Redis at most once a second per process."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._read_at = float("-inf")
        # One reader at a time. On gevent the read yields, and a hundred jobs found the cache
        # stale at once: a hundred HGETALLs and new connections every second, 9% of the
        # worker's CPU (measured). Now the others use the last values meanwhile; only before
        # the very first read do they wait for it, as no limit is known yet.
        self._refreshing = threading.Lock()

    def get(self, job: str) -> str | None:
        if self._stale():
            never_read = self._read_at == float("-inf")
            if self._refreshing.acquire(blocking=never_read):
                try:
                    if self._stale():
                        self._refresh()
                finally:
                    self._refreshing.release()
        return self._values.get(job)

    def _stale(self) -> bool:
        return time.monotonic() - self._read_at > LIMITS_REFRESH_SECONDS

    def _refresh(self) -> None:
        try:
            self._values = read_overrides()
        except Exception:  # keep the last known limits if Redis blips
            log.warning("could not read run-time rate limits", exc_info=True)
        self._read_at = time.monotonic()


_limits = _LimitCache()


def wait_for_turn(task: Task, arguments: Mapping[str, Any]) -> None:
    """Called by every jobq job before its body: wait for the job's turn under its rate limit.

    Returns when the job may run (at once, or after a short wait in place). When the turn is
    further away, parks the job in Redis and raises :class:`celery.exceptions.Ignore`: the
    worker acknowledges this delivery and the job comes back, same id, when its turn comes, and
    then takes the turn it reserved (kept in Redis, not in the message).
    """
    request = task.request
    if request.called_directly:
        return
    rate = effective_rate(getattr(task, RATE_ATTRIBUTE, None), _limits.get(task.name))
    if rate is None:
        return
    key_function = getattr(task, RATE_KEY_ATTRIBUTE, None)
    key = key_function(arguments) if key_function else None
    wait, turn = reserve_turn(task.name, rate, key, job_id=request.id)
    settings = get_settings()
    queue = getattr(task, QUEUE_ATTRIBUTE, None) or "io"
    max_park = settings.cpu_rate_max_park if queue == "cpu" else settings.io_rate_max_park
    if wait <= max_park:
        if wait > 0:
            time.sleep(wait)  # gevent's sleep under the I/O pool: only this greenlet waits
        return
    park(task, turn, wait, queue)
    raise Ignore()


def park(task: Task, turn: float, wait: float, queue: str) -> None:
    """Store this delivery's message in ``jobq:delayed:<queue>`` until ``turn`` (epoch s)."""
    parked = task.signature_from_request()
    parked.options["headers"] = {**(parked.options.get("headers") or {}), PARKED_HEADER: turn}
    pipe = get_redis().pipeline(transaction=True)  # the message and its turn, or neither
    if task.request.id:
        keep_turn(pipe, task.request.id, turn, wait)
    pipe.zadd(DELAYED_PREFIX + queue, {dumps(dict(parked)): turn})
    pipe.hincrby(RATE_STATS_KEY, f"{task.name}:parked", 1)
    pipe.execute()


def move_due_jobs(app: Celery, queues: list[str], delayed_queues: list[str] | None = None) -> int:
    """Put parked jobs of ``queues`` whose turn has come, and delayed jobs now due, on their queue.

    Delayed jobs move for every queue of ``delayed_queues`` (default ``queues``), consumed here
    or not: a due job on a queue nobody consumes yet waits there as any submitted job does,
    and any live worker publishes it on time. Parked jobs move only for ``queues``: they are
    rate-limited, and piled up on a queue nobody consumes they would all run at once later.
    Returns how many moved.
    """
    moved = 0
    for queue in delayed_queues if delayed_queues is not None else queues:
        # Delayed submits first (workers/stores/scheduled.py): one atomic script that moves at
        # most the room below the mark and says what room is left, in the one round trip that
        # counted the room for parked jobs before.
        moved_now, room = move_scheduled(queue, limit=MOVER_BATCH)
        moved += moved_now
        if room <= 0 or queue not in queues:
            # Left parked (where they count in the queue's backlog already) until the queue
            # drains below its mark. The mover holds no worker slot, so waiting blocks nothing.
            continue
        for member in take_due(queue, limit=min(room, MOVER_BATCH)):
            try:
                signature(loads(member), app=app).apply_async()
            except Exception:
                # Left in the set: its lease expires and a mover tries again.
                log.exception("could not re-publish a rate-limited job")
                continue
            forget_parked(queue, member)
            moved += 1
    return moved


class _MoverThread(LoopThread):
    def __init__(self, worker: Any, queues: list[str]) -> None:
        super().__init__("jobq-rate-mover")
        self.worker = worker
        self.app = worker.app
        self.queues = queues

    def movable(self) -> list[str]:
        """The queues this worker consumes right now and that are not paused.

        A queue nobody consumes (its pool paused, or without a worker) keeps its parked jobs:
        moved there, they would pile up and all run at once when it is consumed again.
        """
        consumer = getattr(self.worker, "consumer", None)
        mine = [queue for queue in self.queues if consuming(consumer, queue)]
        if not mine:
            return mine
        paused = paused_queues()
        return [queue for queue in mine if queue not in paused]

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                queues = self.movable()
                if move_due_jobs(self.app, queues, self.queues):
                    continue
                # Nothing due: sleep until the next parked job is, at most MOVER_IDLE_MAX, so an
                # idle worker polls 4 times a second instead of 20. A job parked meanwhile may
                # come back up to that late, with the others due by then.
                due_in = seconds_until_next_due(queues, self.queues)
                wait = MOVER_IDLE_MAX if due_in is None else min(MOVER_IDLE_MAX, due_in)
            except Exception:  # Redis restarting: keep trying, the jobs are safe in the set
                log.warning("rate-limit mover: Redis unavailable", exc_info=True)
                wait = MOVER_IDLE_MAX
            self.stopping.wait(max(MOVER_INTERVAL, wait))


class RateLimitMover(LoopStep):
    """Worker bootstep: every worker puts parked jobs back on their queue when their turn comes.

    Every worker runs one (a Lua script leases each due job to one mover) for the queues it
    consumes, so parked jobs move as long as a worker consumes their queue, and stay parked
    while none does.
    """

    # Started after the pool: prefork forks its children when the pool starts, and a thread
    # already running then can hold a lock (the import lock, a connection pool's) that each
    # child inherits locked forever. Started before the pool, the mover did that about once
    # in ten worker starts: the child hung on its first job.
    requires = ("celery.worker.components:Pool",)

    def make_thread(self, parent: Any) -> LoopThread:
        return _MoverThread(parent, [profile.queue for profile in POOLS.values()])


def install(app: Celery, settings: Settings) -> None:
    """Run the mover in every worker of ``app``."""
    app.steps["worker"].add(RateLimitMover)
