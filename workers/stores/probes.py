"""Probes: synthetic jobs report how many of them run at the same moment, and where.

A probe is a named set of Redis keys: ``current`` (jobs inside now), ``peak`` (the most ever
inside at once) and a list of ``pid:greenlet?:start:end`` visits, kept for an hour from the
first visit. Tests and benchmarks read them
to prove concurrency from the worker side rather than trusting configuration.

Example::

    with probe("run-42"):
        time.sleep(0.2)
    read_probe("run-42")["peak"]
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from workers.keys import PROBE_PREFIX
from workers.pools import on_gevent
from workers.stores.client import get_redis
from workers.stores.scripts import LuaScript

PROBE_TTL_SECONDS = 3600
ENTER = LuaScript(__package__, "probe_enter.lua")
EXIT = LuaScript(__package__, "probe_exit.lua")


def _in_greenlet() -> bool:
    if not on_gevent():
        return False
    import gevent

    return gevent.getcurrent() is not gevent.get_hub()


@contextmanager
def probe(name: str) -> Iterator[None]:
    """Count this job in probe ``name`` while the block runs."""
    client = get_redis()
    base = PROBE_PREFIX + name
    ENTER(client, keys=[base + ":current", base + ":peak"], args=[PROBE_TTL_SECONDS])
    started = time.time()
    try:
        yield
    finally:
        visit = f"{os.getpid()}:{int(_in_greenlet())}:{started}:{time.time()}"
        # The visits expire an hour after the first one, however steadily the name is used.
        EXIT(client, keys=[base + ":current", base + ":visits"], args=[visit, PROBE_TTL_SECONDS])


def read_probe(name: str) -> dict[str, Any]:
    """Peak concurrency and the visits (pid, greenlet, start, end) recorded under ``name``."""
    client = get_redis()
    base = PROBE_PREFIX + name
    visits = []
    for raw in client.lrange(base + ":visits", 0, -1):
        pid, greenlet, start, end = raw.split(":")
        visits.append(
            {"pid": int(pid), "greenlet": greenlet == "1", "start": float(start), "end": float(end)}
        )
    return {"peak": int(client.get(base + ":peak") or 0), "visits": visits}
