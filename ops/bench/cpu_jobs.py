"""Scenario 2, CPU jobs: ``cpu_spin(50)`` on jobq's CPU pool vs one gevent process vs solo.

The same jobq app and job code in all three; only the pool differs. Prefork with one process
per core can run Python on every core; a gevent process of concurrency 100 still runs one
greenlet at a time (the GIL, and a CPU-bound greenlet never yields); solo is one job at a time.
Speed-up is jobs/s over solo in the same round; its ceiling is the number of cores.

Example::

    $ jobq bench cpu_jobs
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ops.bench.batch import Job, measure_batch
from ops.bench.harness import Workers
from ops.bench.rounds import (
    Metric,
    ScenarioSpec,
    Setup,
    run_scenario,
)
from ops.redis_server import RedisServer

SIZES = {"full": {"jobs": 400, "max_seconds": 8.0}, "tiny": {"jobs": 8, "max_seconds": 20.0}}
# Same settings as `jobq worker`, only the pool changes (see workers/pools.py).
COMMON = ("--prefetch-multiplier", "1", "--without-gossip", "--without-mingle")


def setups() -> list[Setup]:
    return [
        Setup("solo", "solo (one job at a time)", {"pool": "solo"}),
        Setup("gevent", "one gevent process, c=100", {"pool": "gevent"}),
        Setup("jobq-cpu", "jobq CPU pool: prefork, 1 per core", {"pool": "jobq"}),
    ]


def start(workers: Workers, setup: Setup) -> None:
    pool = setup.options["pool"]
    if pool == "jobq":
        workers.jobq("cpu")
    else:
        concurrency = 100 if pool == "gevent" else 1
        workers.celery(
            "workers.app", pool=pool, concurrency=concurrency, queues=["cpu"], extra=COMMON
        )


def run(server: RedisServer, *, rounds: int, tiny: bool, log_dir: Path) -> dict[str, Any]:
    size = SIZES["tiny" if tiny else "full"]
    spec = ScenarioSpec(
        name="cpu_jobs",
        title="2. CPU jobs: cpu_spin(50 ms)",
        question="How many 50 ms CPU jobs/s, and what speed-up over one job at a time?",
        metrics=[
            Metric("jobs_s", "jobs/s", 1),
            Metric("cpu_ms_per_job", "worker CPU ms/job", 1),
            Metric("cores_used", "worker cores used", 2),
            Metric("rss_mb", "worker RSS MB"),
        ],
        reference="solo",
        ratio_metric="jobs_s",
        size=f"{size['jobs']} jobs per run, each run bounded to {size['max_seconds']:.0f} s",
        chart={"metric": "jobs_s", "ylabel": "50 ms CPU jobs/s (higher is better)"},
    )

    def measure(setup: Setup, _round: int) -> dict[str, float]:
        with Workers(log_dir, server) as workers:
            start(workers, setup)
            jobs = [Job("cpu_spin", "cpu", {"ms": 50, "probe_name": None})] * size["jobs"]
            return measure_batch(server, workers, jobs, size["max_seconds"])

    return run_scenario(spec, setups(), rounds, measure, tiny=tiny)
