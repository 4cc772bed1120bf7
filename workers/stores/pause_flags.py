"""Pause flags: ``jobq:paused:<pool>`` is set while a pool is paused (``jobq pause``).

The flag is what makes a pause hold for workers that start, restart or miss the broadcast; the
worker's side is :mod:`workers.features.pause`, the operator's :mod:`ops.pausing`.

Example::

    >>> set_paused("io", True); paused_pools()
    {'io': {'since': 1764500000.0}}
"""

from __future__ import annotations

import json
import time
from typing import Any

from workers.keys import PAUSE_PREFIX
from workers.pools import POOLS
from workers.stores.client import get_redis


class UnknownPool(ValueError):
    """Not one of the pools (io, cpu)."""


def queue_of(pool: str) -> str:
    """The queue ``pool`` consumes; :class:`UnknownPool` for anything but io and cpu."""
    if pool not in POOLS:
        raise UnknownPool(f"unknown pool {pool!r} (pools: {', '.join(sorted(POOLS))})")
    return POOLS[pool].queue


def set_paused(pool: str, paused: bool) -> None:
    """Set (with the time) or delete ``pool``'s flag."""
    queue_of(pool)
    if paused:
        get_redis().set(PAUSE_PREFIX + pool, json.dumps({"since": time.time()}))
    else:
        get_redis().delete(PAUSE_PREFIX + pool)


def is_paused(pool: str) -> bool:
    return bool(get_redis().exists(PAUSE_PREFIX + pool))


def paused_pools() -> dict[str, dict[str, Any]]:
    """The paused pools and since when: ``{"io": {"since": 1700000000.0}}``."""
    names = sorted(POOLS)
    values = get_redis().mget([PAUSE_PREFIX + name for name in names])
    return {name: json.loads(value) for name, value in zip(names, values, strict=True) if value}


def paused_queues() -> set[str]:
    """The queues of the paused pools."""
    return {POOLS[pool].queue for pool in paused_pools()}
