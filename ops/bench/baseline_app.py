"""Plain Celery with its defaults: what a user runs instead of jobq, for the benchmark baselines.

Only the broker URL is set (from ``REDIS_URL``); everything else is Celery 5.7's default: no
result backend, early acks, prefetch multiplier 4, no task events unless the worker gets
``-E`` (the benchmarks pass it, so both sides pay for events and Flower would work). The job
bodies do the same work as jobq's (``io_wait``, ``cpu_spin``, ``fetch_url``) under the same
task names, so one message format feeds both. This module deliberately imports nothing from
``workers``: jobq's signal handlers (job records, sent-time headers) must not run here.

Example::

    $ REDIS_URL=redis://… celery -A ops.bench.baseline_app worker -P prefork -c 2 -Q io -E
"""

from __future__ import annotations

import hashlib
import os
import time
from functools import lru_cache
from typing import Any

import urllib3
from celery import Celery

app = Celery("baseline", broker=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))


@app.task(name="io_wait")
def io_wait(ms: int, probe_name: str | None = None) -> dict[str, Any]:
    """Wait without using the CPU (cooperative under gevent)."""
    time.sleep(ms / 1000)
    return {"ms": ms, "pid": os.getpid()}


@app.task(name="cpu_spin")
def cpu_spin(ms: int, probe_name: str | None = None) -> dict[str, Any]:
    """The same Python loop as jobq's cpu_spin: ``ms`` of this thread's CPU time."""
    deadline = time.thread_time() + ms / 1000
    loops = 0
    while time.thread_time() < deadline:
        for i in range(200):
            loops += i & 1
    return {"ms": ms, "pid": os.getpid(), "loops": loops}


@lru_cache(maxsize=1)
def _http() -> urllib3.PoolManager:
    return urllib3.PoolManager(num_pools=64, maxsize=500, block=False, retries=False)


@app.task(name="fetch_url")
def fetch_url(
    url: str, timeout: float = 10.0, max_bytes: int = 5 * 1024 * 1024, keep_body: bool = False
) -> dict[str, Any]:
    """An HTTP GET through a keep-alive pool, as jobq's fetch_url (without the size cap)."""
    started = time.perf_counter()
    response = _http().request("GET", url, timeout=urllib3.Timeout(connect=5.0, read=timeout))
    body = response.data
    return {
        "url": url,
        "status": response.status,
        "bytes": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
        "elapsed": round(time.perf_counter() - started, 6),
    }
