"""Delayed jobs in Redis: moving the due ones onto their queue, and counting them.

A delayed submit (workers/broker/schedule.py) stores the job's message in
``jobq:scheduled:<queue>`` scored by its due time. The mover thread every worker runs
(:class:`workers.features.rate_limits.RateLimitMover`, the same loop that brings rate-limited
jobs back) calls :func:`move_scheduled` for each queue it consumes and that is not paused. One
Lua script takes the due messages, earliest first, and pushes them on the queue's lists in the
same atomic step: a worker killed at any moment loses nothing and nothing moves twice, and any
number of workers may run it at once.

High-water mark: delayed jobs do not count against it until they are due (the admission gate
counts the lists, the rate limiter's parked jobs and reservations, not this set). When they are
due the script moves at most the room left below the mark, so a full queue keeps them waiting
in Redis, in due order, until it drains.

Example::

    moved, room = move_scheduled("io")      # due jobs of io now on its list
    delayed_by_queue(get_redis(), ["io"])   # {"io": 12}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from workers.keys import SCHEDULED_PREFIX, queue_lists
from workers.stores.admission import gate_keys, marks_for
from workers.stores.client import get_redis
from workers.stores.scripts import LuaScript

# Most messages one script call moves: bounds how long it holds Redis (~0.1 ms per message).
MOVE_BATCH = 200

MOVE = LuaScript(__package__, "move_scheduled.lua")


def move_scheduled(queue: str, *, limit: int = MOVE_BATCH, client: Any = None) -> tuple[int, int]:
    """Put ``queue``'s due delayed jobs on its lists, within the room below its mark.

    Returns (how many moved, the room left below the mark, or ``limit`` without a gate): the
    mover's next use of the room (rate-limited jobs) needs no second round trip to count it.
    """
    marks = marks_for(queue)
    high, low = (marks.high, marks.low) if marks.enabled else (-1, -1)
    parked, closed, held, _leases = gate_keys(queue)
    keys = [SCHEDULED_PREFIX + queue, *queue_lists(queue), parked, closed, held]
    moved, backlog = MOVE(client or get_redis(), keys=keys, args=[limit, high, low])
    return int(moved), (high - int(backlog) if marks.enabled else limit)


def delayed_by_queue(client: Any, queues: Sequence[str]) -> dict[str, int]:
    """Delayed jobs waiting in Redis for their time, per queue (``jobq status``, the exporter)."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        pipe.zcard(SCHEDULED_PREFIX + queue)
    return dict(zip(queues, (int(n) for n in pipe.execute()), strict=True))
