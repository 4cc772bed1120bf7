"""Fault scenario: workers fetch while Redis is at ``maxmemory`` (noeviction), then memory is freed.

A full Redis with ``noeviction`` still serves a BRPOP (a pop frees memory) but refuses the
writes that record a delivery as unacked, so a fetch that pops first and records second loses
the message in between, and the refusal (a Redis error, not a lost connection) used to stop
the worker. The scenario makes Redis full at the very moment jobs appear in both queues, with
one worker per pool running and blocked in its fetch, starts a second I/O worker while Redis is
still full, then frees the memory.

Example::

    with lab(Path("/tmp/lab")) as running:
        print(redis_full(running))
"""

from __future__ import annotations

import time
import uuid

from ops.faults.lab import Lab
from ops.faults.messages import task_envelope
from ops.faults.scenarios import JOB, FaultResult, _tag

FILLER = "jobq-lab:filler"
# Held while Redis is full: maxmemory is set half of it below the memory in use.
FILLER_BYTES = 8 * 1024 * 1024


def _job_envelopes(job: str, queue: str, tag: str, n: int) -> tuple[list[str], list[str]]:
    ids, envelopes = [], []
    for _ in range(n):
        job_id = str(uuid.uuid4())
        body = task_envelope(job, {"tag": tag, "ms": 0}, queue=queue, job_id=job_id)
        ids.append(job_id)
        envelopes.append(body)
    return ids, envelopes


def redis_full(lab: Lab, n: int = 50, full_for: float = 4.0) -> FaultResult:
    """``n`` jobs per pool arrive as Redis goes over ``maxmemory``, freed ``full_for`` s later."""
    tag = _tag()
    running = lab.workers_together(
        {"pool": "io", "concurrency": 4, "name": "full-io"}, {"pool": "cpu", "concurrency": 2}
    )
    client = lab.client()
    client.config_set("maxmemory-policy", "noeviction")
    # The memory a busy Redis holds, freed later; made by Redis itself (SETRANGE zero-pads), so no
    # 8 MB query buffer counts in used_memory now and vanishes a second later.
    client.setrange(FILLER, FILLER_BYTES - 1, b"\0")
    limit = int(client.info("memory")["used_memory"]) - FILLER_BYTES // 2
    io_ids, io_jobs = _job_envelopes(JOB["io"], "io", tag, n)
    cpu_ids, cpu_jobs = _job_envelopes(JOB["cpu"], "cpu", tag, n)
    # One transaction: the jobs arrive as Redis becomes full, so the workers, blocked in their
    # fetch, wake up to queued jobs and a Redis that refuses every write that needs memory.
    with client.pipeline(transaction=True) as pipe:
        pipe.lpush("io", *io_jobs).lpush("cpu", *cpu_jobs)
        pipe.config_set("maxmemory", limit)
        pipe.execute()
    full_at = time.time()
    refused = False
    try:
        client.set("jobq-lab:probe", "x")
    except Exception as exc:  # redis-py's OutOfMemoryError: the lab really is full
        refused = "maxmemory" in str(exc) or "OOM" in str(exc)
    # A worker that starts while Redis is full must wait, not exit.
    late = lab.worker("io", concurrency=4, name="starts-full", ready=False)
    # Full for at least ``full_for`` s, and until the late worker has met the full Redis (it
    # takes seconds to start) or 60 s have passed.
    started = time.monotonic()
    while all(w.alive() for w in [*running, late]) and time.monotonic() - started < 60:
        if time.monotonic() - started >= full_for and "cannot take jobs" in late.log_tail(20000):
            break
        time.sleep(0.1)
    ran_while_full = sum(lab.effects(tag).values())
    client.delete(FILLER)
    freed_at = time.time()
    ids = io_ids + cpu_ids
    tally = lab.wait_for_effects(tag, ids, timeout=60)
    done_at = time.time()
    alive = all(w.alive() for w in [*running, late])
    tally.notes.update(
        redis_refused_writes=refused,
        full_s=round(freed_at - full_at, 1),
        effects_while_full=ran_while_full,
        workers_survived=alive,
        late_worker_waited="cannot take jobs" in late.log_tail(20000),
        queued_after=lab.queued("io") + lab.queued("cpu"),
    )
    return FaultResult(
        f"Redis at maxmemory (noeviction) as {n} + {n} jobs arrive, workers fetching, "
        "one starting; then memory freed",
        tally,
        done_at - freed_at if tally.lost == 0 else None,
        "0 lost; workers wait (logging) while Redis is full and resume when memory is freed",
        tally.lost == 0 and alive and refused and tally.notes["late_worker_waited"],
    )
