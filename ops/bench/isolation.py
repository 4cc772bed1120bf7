"""Scenario 3, isolation (the headline): I/O job latency while a CPU backlog is queued.

10 000 ``cpu_spin(50)`` jobs are queued; then I/O jobs (``io_wait(100)``) are submitted at a
steady rate and each one's latency from submit to finish (its ``task-succeeded`` event) is
recorded. jobq's two pools (prefork on ``cpu``, gevent processes on ``io``) against a single
Celery worker with its defaults consuming both queues with one shared prefork pool, which is
what one default ``celery worker`` does: every I/O job then waits for a process that is busy
computing, or queues behind CPU jobs already prefetched.

Example::

    $ jobq bench isolation
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from ops.bench.batch import Job, publish_jobs
from ops.bench.harness import EventTap, Workers, publish, purge
from ops.bench.rounds import (
    Metric,
    ScenarioSpec,
    Setup,
    run_scenario,
)
from ops.percentiles import percentile
from ops.redis_server import RedisServer

SIZES = {
    "full": {"backlog": 10_000, "rate": 20.0, "seconds": 8.0, "drain_s": 30.0},
    "tiny": {"backlog": 200, "rate": 10.0, "seconds": 1.0, "drain_s": 20.0},
}
IO_JOB = {"ms": 100, "probe_name": None}


def setups() -> list[Setup]:
    from workers.pools import io_process_count
    from workers.settings import get_settings

    processes = io_process_count(get_settings())
    return [
        Setup("shared", "one Celery worker (defaults): prefork c=2 on io+cpu", {"kind": "shared"}),
        Setup("jobq", f"jobq: prefork c=2 on cpu + {processes}× gevent on io", {"kind": "jobq"}),
    ]


def start(workers: Workers, setup: Setup) -> None:
    from workers.pools import io_process_count
    from workers.settings import get_settings

    if setup.options["kind"] == "shared":
        workers.celery(
            "ops.bench.baseline_app", pool="prefork", concurrency=2, queues=["io", "cpu"]
        )
        return
    workers.jobq("cpu", ready=False)
    for _ in range(io_process_count(get_settings())):
        workers.jobq("io", ready=False)
    workers.wait_ready()


def measure_latency(server: RedisServer, size: dict[str, float]) -> dict[str, float]:
    """Queue the CPU backlog, then submit I/O jobs at a steady rate; latencies in ms."""
    publish_jobs([Job("cpu_spin", "cpu", {"ms": 50, "probe_name": None})] * int(size["backlog"]))
    submitted: dict[str, float] = {}
    with EventTap(server) as tap:
        interval = 1 / size["rate"]
        first = time.monotonic()
        for index in range(int(size["rate"] * size["seconds"])):
            # A steady rate: each submit at its slot, however long the previous one took.
            time.sleep(max(0.0, first + index * interval - time.monotonic()))
            sent_at = time.time()
            (job_id,) = publish("io_wait", "io", [IO_JOB])
            submitted[job_id] = sent_at
        tap.wait(list(submitted), timeout=size["drain_s"])
        done = {job_id: tap.done[job_id] for job_id in submitted if job_id in tap.done}
    purge(server, ["io", "cpu"])
    latencies = [
        (done[job_id] - sent) * 1000 for job_id, sent in submitted.items() if job_id in done
    ]
    return {
        "p50_ms": percentile(latencies, 50, empty=math.nan),
        "p95_ms": percentile(latencies, 95, empty=math.nan),
        "p99_ms": percentile(latencies, 99, empty=math.nan),
        "io_jobs": float(len(submitted)),
        "unfinished": float(len(submitted) - len(done)),
    }


def run(server: RedisServer, *, rounds: int, tiny: bool, log_dir: Path) -> dict[str, Any]:
    size = SIZES["tiny" if tiny else "full"]
    spec = ScenarioSpec(
        name="isolation",
        title="3. Isolation: I/O latency behind a CPU backlog (headline)",
        question="How long does a 100 ms I/O job take, submit to finish, while CPU jobs queue?",
        metrics=[
            Metric("p50_ms", "p50 ms"),
            Metric("p95_ms", "p95 ms"),
            Metric("p99_ms", "p99 ms"),
            Metric("unfinished", "unfinished"),
        ],
        reference="shared",
        ratio_metric="p99_ms",
        lower_is_better=True,
        size=(
            f"{size['backlog']:,} cpu_spin(50) queued, then io_wait(100) at {size['rate']:.0f}/s "
            f"for {size['seconds']:.0f} s; unfinished = not done {size['drain_s']:.0f} s later"
        ),
        chart={
            "kind": "latency",
            "metrics": ["p50_ms", "p95_ms", "p99_ms"],
            "ylabel": "I/O job latency, ms (lower is better, log scale)",
        },
    )

    def measure(setup: Setup, _round: int) -> dict[str, float]:
        with Workers(log_dir, server) as workers:
            start(workers, setup)
            return measure_latency(server, size)

    return run_scenario(spec, setups(), rounds, measure, tiny=tiny)
