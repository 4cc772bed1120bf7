"""Synthetic faulty jobs, for fault tests and ``jobq faults``: they fail on purpose.

* ``record_effect(tag, ms)`` (io) / ``record_effect_cpu(tag, ms)`` (cpu): wait or compute, then
  count one effect per run in Redis (``HINCRBY jobq:effects:<tag> <job id> 1``): the fault
  tests read how often each job ran to completion, ``jobq:starts-seen:<tag>`` how often each
  started, and the list ``jobq:start-log:<tag>`` when and in which process.
* ``fail_times(n, tag)`` (io): raises :class:`TransientFault` on its first ``n`` runs (counted in
  Redis per job id), then succeeds; declared transient, so it retries with backoff.
* ``always_fail(message)`` (cpu): raises ``ValueError`` (not transient): dead-lettered at once.
* ``crash_process(mode, tag)`` (cpu or io): kills its own process: ``exit`` (``os._exit``),
  ``kill`` (SIGKILL), ``segfault`` (a NULL read via ctypes). A poison job.
* ``write_file(path)`` (io): creates a file; the bad-message tests use it as a sentinel.
* ``compute_forever(seconds)`` (io): burns the CPU without yielding (gevent time-limit tests);
  ``wait_then_compute(wait_s, compute_s)`` does so after a cooperative wait;
  ``record_effect_blocking(tag, ms)`` does so for ``ms`` ms and counts its start and effect
  like ``record_effect``.

Example::

    $ jobq submit fail_times n=2 tag=demo --wait
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import time
from typing import Annotated, Any, Literal

from pydantic import Field

from workers.jobs.synthetic import spin
from workers.registry import cpu_job, io_job
from workers.stores.client import get_redis

Millis = Annotated[int, Field(ge=0, le=600_000)]
EFFECTS_PREFIX = "jobq:effects:"
STARTS_PREFIX = "jobq:starts-seen:"
START_LOG_PREFIX = "jobq:start-log:"


class TransientFault(ConnectionError):
    """A failure that goes away when retried (declared transient by ``fail_times``)."""


def _job_id() -> str:
    from celery import current_task

    return str(current_task.request.id) if current_task else "?"


def _note(prefix: str, tag: str) -> int:
    if prefix != STARTS_PREFIX:
        return int(get_redis().hincrby(prefix + tag, _job_id(), 1))
    # Starts are also logged with their time and process, to measure time to recover.
    entry = json.dumps({"id": _job_id(), "t": time.time(), "pid": os.getpid()})
    pipe = get_redis().pipeline(transaction=False)
    pipe.hincrby(prefix + tag, _job_id(), 1)
    pipe.rpush(START_LOG_PREFIX + tag, entry)
    return int(pipe.execute()[0])


@io_job
def record_effect(tag: str, ms: Millis = 0) -> dict[str, Any]:
    """Wait ``ms`` ms, then count one effect for this job id under ``tag``."""
    _note(STARTS_PREFIX, tag)
    time.sleep(ms / 1000)
    return {"effects": _note(EFFECTS_PREFIX, tag), "pid": os.getpid()}


@cpu_job
def record_effect_cpu(tag: str, ms: Millis = 0) -> dict[str, Any]:
    """Compute for ``ms`` ms of wall time, then count one effect for this job id under ``tag``."""
    _note(STARTS_PREFIX, tag)
    deadline = time.monotonic() + ms / 1000
    while time.monotonic() < deadline:
        spin(5)
    return {"effects": _note(EFFECTS_PREFIX, tag), "pid": os.getpid()}


@io_job(retry_on=(TransientFault,), retry_backoff=1, retry_backoff_max=2)
def fail_times(n: Annotated[int, Field(ge=0, le=100)], tag: str) -> dict[str, Any]:
    """Raise a transient error on the first ``n`` runs of this job, then succeed."""
    runs = _note(STARTS_PREFIX, tag)
    if runs <= n:
        raise TransientFault(f"run {runs} of {n} planned failures")
    return {"runs": runs, "effects": _note(EFFECTS_PREFIX, tag)}


@cpu_job
def always_fail(message: str = "planned failure") -> None:
    """Raise ``ValueError(message)``: a permanent error, dead-lettered without retries."""
    raise ValueError(message)


def _crash(mode: str, tag: str) -> None:
    _note(STARTS_PREFIX, tag)
    if mode == "exit":
        os._exit(70)
    if mode == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    ctypes.string_at(0)  # segfault: read address 0


CrashMode = Literal["exit", "kill", "segfault"]


@cpu_job
def crash_process(mode: CrashMode = "exit", tag: str = "poison") -> None:
    """Kill the prefork child running this job (a poison job)."""
    _crash(mode, tag)


@io_job
def crash_io_worker(mode: CrashMode = "exit", tag: str = "poison") -> None:
    """Kill the whole gevent worker running this job (a poison job on the I/O pool)."""
    _crash(mode, tag)


@io_job
def write_file(path: str) -> str:
    """Create the file ``path``: a visible side effect for the bad-message tests."""
    with open(path, "w") as handle:
        handle.write("ran\n")
    return path


def _burn(seconds: float) -> int:
    deadline = time.monotonic() + seconds
    loops = 0
    while time.monotonic() < deadline:
        loops += 1
    return loops


@io_job
def compute_forever(seconds: Annotated[float, Field(gt=0, le=3600)]) -> int:
    """Burn the CPU for ``seconds`` without yielding to the gevent hub."""
    return _burn(seconds)


@io_job
def record_effect_blocking(tag: str, ms: Millis = 0) -> dict[str, Any]:
    """Burn the CPU for ``ms`` ms without yielding to the hub, counting start and effect."""
    _note(STARTS_PREFIX, tag)
    _burn(ms / 1000)
    return {"effects": _note(EFFECTS_PREFIX, tag), "pid": os.getpid()}


@io_job
def wait_then_compute(
    wait_s: Annotated[float, Field(ge=0, le=3600)],
    compute_s: Annotated[float, Field(gt=0, le=3600)],
) -> int:
    """Wait (yielding), then burn the CPU without yielding: a job that blocks the hub late."""
    time.sleep(wait_s)
    return _burn(compute_s)


@io_job
def sleep_soft(seconds: Annotated[float, Field(gt=0, le=3600)]) -> str:
    """Sleep; on the soft time limit, clean up and return ``"cleaned up"``."""
    from celery.exceptions import SoftTimeLimitExceeded

    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "cleaned up"
    return "slept"


@cpu_job
def spin_soft(seconds: Annotated[float, Field(gt=0, le=3600)], ignore_soft: bool = False) -> str:
    """Compute; on the soft time limit return ``"cleaned up"`` (or, ``ignore_soft``, go on)."""
    from celery.exceptions import SoftTimeLimitExceeded

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            spin(5)
        except SoftTimeLimitExceeded:
            if not ignore_soft:
                return "cleaned up"
    return "done"
