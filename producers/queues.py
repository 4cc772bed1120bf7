"""Queue depth on Redis: a kombu queue is several lists, one per priority step.

kombu's Redis transport emulates priorities with one list per step (``io``, ``io\\x06\\x163``,
``io\\x06\\x166``, ``io\\x06\\x169``), so the backlog is the sum of their lengths, read in one
pipelined round trip. Jobs a worker has taken but not acknowledged sit in the ``unacked`` hash.

Example::

    >>> queue_depths(get_redis(), ["io", "cpu"])
    {'io': 0, 'cpu': 12}
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from workers.keys import PRIORITY_STEPS, queue_lists

UNACKED_HASH = "unacked"


def queue_depths(client: redis.Redis, queues: Sequence[str]) -> dict[str, int]:
    """Messages waiting in each queue (all priority lists), in one round trip."""
    pipe = client.pipeline(transaction=False)
    for queue in queues:
        for name in queue_lists(queue):
            pipe.llen(name)
    lengths = pipe.execute()
    steps = len(PRIORITY_STEPS)
    return {q: sum(lengths[i * steps : (i + 1) * steps]) for i, q in enumerate(queues)}


def unacked_count(client: redis.Redis) -> int:
    """Messages delivered to some worker and not yet acknowledged (all queues)."""
    return int(client.hlen(UNACKED_HASH))
