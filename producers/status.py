"""``jobq status``: each queue's depth and the workers online per pool, as data.

Worker facts come from Celery's remote control (``inspect stats/active/reserved``), i.e. from
the workers themselves: the pool implementation they run, their concurrency, how many jobs they
have processed, and what they are holding now.

Example::

    >>> snapshot = collect_status(timeout=1.0)
    >>> snapshot["queues"]["io"]["depth"]
    0
"""

from __future__ import annotations

from typing import Any

from producers.queues import queue_depths, unacked_count
from workers.app import get_app
from workers.pools import POOLS
from workers.stores.client import get_redis
from workers.stores.pause_flags import paused_pools
from workers.stores.scheduled import delayed_by_queue

POOL_NAMES = {
    "celery.concurrency.gevent:TaskPool": "gevent",
    "celery.concurrency.prefork:TaskPool": "prefork",
    "celery.concurrency.threads:TaskPool": "threads",
    "celery.concurrency.solo:TaskPool": "solo",
}


def collect_status(*, timeout: float = 1.0) -> dict[str, Any]:
    """Queues and workers, as one JSON-ready dict (what ``jobq status --json`` prints)."""
    client = get_redis()
    queues = [profile.queue for profile in POOLS.values()]
    depths = queue_depths(client, queues)
    delayed = delayed_by_queue(client, queues)
    workers = collect_workers(timeout=timeout)
    per_queue: dict[str, Any] = {}
    paused = {POOLS[pool].queue for pool in paused_pools()}
    for queue in queues:
        serving = [w for w in workers if queue in w["queues"]]
        per_queue[queue] = {
            "depth": depths[queue],
            # Submitted with delay/at, waiting in Redis until due: not in depth (docs/delay.md).
            "delayed": delayed[queue],
            "workers": len(serving),
            "active": sum(w["active"] for w in serving),
            "reserved": sum(w["reserved"] for w in serving),
            # `jobq pause`: the pool's workers take no new jobs (ops/pausing.py).
            "paused": queue in paused,
        }
    return {
        "queues": per_queue,
        "unacked": unacked_count(client),
        "workers": workers,
        "in_flight": sum(w["active"] for w in workers),
    }


def collect_workers(*, timeout: float = 1.0) -> list[dict[str, Any]]:
    """Every worker that answered within ``timeout``: pool, concurrency, counts, queues."""
    inspector = get_app().control.inspect(timeout=timeout)
    stats = inspector.stats() or {}
    if not stats:
        return []
    # Named destinations: Celery stops waiting once each of them has answered, instead of
    # waiting out the timeout three more times (a stalled worker still costs one timeout each).
    inspector = get_app().control.inspect(destination=sorted(stats), timeout=timeout)
    active = inspector.active() or {}
    reserved = inspector.reserved() or {}
    queues = inspector.active_queues() or {}
    workers = []
    for node, info in sorted(stats.items()):
        pool = info.get("pool", {})
        implementation = pool.get("implementation", "")
        workers.append(
            {
                "name": node,
                "pool": POOL_NAMES.get(implementation, implementation),
                "concurrency": pool.get("max-concurrency"),
                "processes": pool.get("processes", []),
                "pid": info.get("pid"),
                "processed": sum((info.get("total") or {}).values()),
                "active": len(active.get(node, [])),
                # The jobs it is running now (`jobq top` shows each with its progress).
                "running": [
                    {"id": job.get("id"), "name": job.get("name")}
                    for job in active.get(node, [])
                    if job.get("id")
                ],
                "reserved": len(reserved.get(node, [])),
                "queues": [q["name"] for q in queues.get(node, [])],
                "prefetch_count": info.get("prefetch_count"),
            }
        )
    return workers
