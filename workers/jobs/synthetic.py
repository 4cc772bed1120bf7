"""Calibrated synthetic jobs for tests and benchmarks: ``io_wait``, ``cpu_spin``, ``count_to``.

``io_wait`` waits the way I/O waits: ``time.sleep`` is cooperative once gevent has patched the
process, so hundreds of them overlap in one I/O worker. ``cpu_spin`` burns a core in Python for
the given milliseconds of CPU time, so it only runs in parallel across processes.
``count_to`` (io) and ``cpu_count_to`` (cpu) work through ``n`` steps over ``ms`` milliseconds,
reporting progress after every step, as a job working through a list of items does
(``jobq show ID`` shows the bar while it runs).

Example::

    $ jobq submit io_wait ms=200 --wait
    $ jobq submit cpu_spin ms=50 --wait
    $ jobq submit count_to n=1000 ms=20000 note=rows
"""

from __future__ import annotations

import contextlib
import os
import time
from typing import Annotated, Any

from pydantic import Field

from workers.progress import progress
from workers.registry import cpu_job, io_job
from workers.stores.probes import probe

Millis = Annotated[int, Field(ge=0, le=600_000)]
Steps = Annotated[int, Field(ge=1, le=10_000_000)]
Note = Annotated[str, Field(max_length=200)]


@io_job
def io_wait(ms: Millis, probe_name: str | None = None) -> dict[str, Any]:
    """Wait ``ms`` milliseconds without using the CPU; count concurrency in ``probe_name``."""
    with probe(probe_name) if probe_name else contextlib.nullcontext():
        time.sleep(ms / 1000)
    return {"ms": ms, "pid": os.getpid()}


def spin(ms: float) -> int:
    """Compute in Python until ``ms`` of this thread's CPU time is used; return the loop count."""
    deadline = time.thread_time() + ms / 1000
    loops = 0
    while time.thread_time() < deadline:
        # A little real arithmetic per check, so the loop is mostly Python bytecode.
        for i in range(200):
            loops += i & 1
    return loops


@cpu_job
def cpu_spin(ms: Millis, probe_name: str | None = None) -> dict[str, Any]:
    """Burn ``ms`` milliseconds of CPU in Python; count concurrency in ``probe_name``."""
    with probe(probe_name) if probe_name else contextlib.nullcontext():
        loops = spin(ms)
    return {"ms": ms, "pid": os.getpid(), "loops": loops}


@io_job
def count_to(n: Steps, ms: Millis = 0, note: Note = "") -> dict[str, Any]:
    """Take ``n`` steps spread over ``ms`` milliseconds of waiting, reporting progress at each."""
    start = time.monotonic()
    for done in range(1, n + 1):
        # Paced against the clock, not ms/n per sleep: many tiny sleeps would overshoot.
        ahead = start + ms / 1000 * done / n - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        progress(done, n, note=note)
    return {"n": n, "pid": os.getpid()}


@cpu_job
def cpu_count_to(n: Steps, ms: Millis = 0, note: Note = "") -> dict[str, Any]:
    """Burn ``ms`` milliseconds of CPU in ``n`` steps, reporting progress after each."""
    for done in range(1, n + 1):
        spin(ms / n)
        progress(done, n, note=note)
    return {"n": n, "pid": os.getpid()}
