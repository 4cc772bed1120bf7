"""``jobq pause`` / ``jobq resume``: the kill switch, from the operator's side.

``pause(pool)`` sets the pool's flag in Redis (so the pause holds for workers that start later
or miss the broadcast) and broadcasts ``jobq_pause``: every worker started for that pool's queue
stops consuming it (Celery's ``cancel_task_queue``). Jobs in flight finish; prefetched ones run
too. ``resume(pool)`` deletes the flag and broadcasts ``jobq_resume`` to the workers started for
that queue only. The workers' side is :mod:`workers.features.pause`.

Example::

    $ jobq pause io        # io workers finish what they hold, then idle
    $ jobq resume io
"""

from __future__ import annotations

import time

from workers.app import get_app
from workers.stores.pause_flags import queue_of, set_paused


def pause(pool: str, *, timeout: float = 1.0, settle: float = 10.0) -> list[str]:
    """Pause ``pool``; return the workers that stopped consuming.

    Workers answer within ``timeout`` seconds; the cancel itself runs in each worker's consumer
    loop, so this then waits (up to ``settle`` seconds) until they report no longer consuming.
    """
    queue = queue_of(pool)
    set_paused(pool, True)
    nodes = _broadcast("jobq_pause", queue, timeout)
    return _wait_applied(queue, nodes, consuming=False, settle=settle)


def resume(pool: str, *, timeout: float = 1.0, settle: float = 10.0) -> list[str]:
    """Resume ``pool``; return the workers that consume its queue again (see :func:`pause`)."""
    queue = queue_of(pool)
    set_paused(pool, False)
    nodes = _broadcast("jobq_resume", queue, timeout)
    return _wait_applied(queue, nodes, consuming=True, settle=settle)


def _wait_applied(queue: str, nodes: list[str], *, consuming: bool, settle: float) -> list[str]:
    deadline = time.monotonic() + settle
    pending = set(nodes)
    while pending and time.monotonic() < deadline:
        answers = get_app().control.inspect(destination=sorted(pending), timeout=0.5)
        for node, queues in (answers.active_queues() or {}).items():
            if (queue in {q["name"] for q in queues}) == consuming:
                pending.discard(node)
        if pending:
            time.sleep(0.1)
    return sorted(set(nodes) - pending)


def _broadcast(command: str, queue: str, timeout: float) -> list[str]:
    replies = get_app().control.broadcast(
        command, arguments={"queue": queue}, reply=True, timeout=timeout
    )
    confirmed = []
    for reply in replies or []:
        for node, answer in reply.items():
            if isinstance(answer, dict) and answer.get("ok") == "done":
                confirmed.append(node)
    return sorted(confirmed)
