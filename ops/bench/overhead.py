"""Scenario 5, overhead: no-op jobs end to end with events on, jobq's workers vs Celery defaults.

A no-op job measures what the machinery costs per job: fetching, acking, events, results,
job records, logging. Celery with its defaults (prefork, one process per core, ``-E`` for
Flower) is the reference; jobq's I/O side (one gevent process per core) and its CPU pool
(prefork) run the same no-op with everything jobq keeps on (acks late, results, job records,
events); a fourth row sends the jobs fire and forget (``ignore_result``: no result written).
Jobs/s is end to end (publish to ``task-succeeded``); CPU is all worker processes.

Example::

    $ jobq bench overhead
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

SIZES = {"full": {"jobs": 3000, "max_seconds": 20.0}, "tiny": {"jobs": 40, "max_seconds": 20.0}}


def setups() -> list[Setup]:
    from workers.pools import io_process_count
    from workers.settings import get_settings

    processes = io_process_count(get_settings())
    return [
        Setup("celery", "Celery defaults: prefork c=2, -E", {"kind": "celery"}),
        Setup("jobq-io", f"jobq I/O pool: {processes}× gevent", {"kind": "io"}),
        Setup(
            "jobq-io-ff",
            f"jobq I/O pool: {processes}× gevent, fire and forget (no result)",
            {"kind": "io", "ignore_result": True},
        ),
        Setup("jobq-cpu", "jobq CPU pool: prefork c=2", {"kind": "cpu"}),
    ]


def start(workers: Workers, setup: Setup) -> Job:
    """Start the setup's workers; return the no-op job they consume."""
    from workers.pools import io_process_count
    from workers.settings import get_settings

    kind = setup.options["kind"]
    if kind == "celery":
        workers.celery("ops.bench.baseline_app", pool="prefork", concurrency=2, queues=["cpu"])
        return Job("cpu_spin", "cpu", {"ms": 0, "probe_name": None})
    if kind == "cpu":
        workers.jobq("cpu", concurrency=2)
        return Job("cpu_spin", "cpu", {"ms": 0, "probe_name": None})
    for _ in range(io_process_count(get_settings())):
        workers.jobq("io", ready=False)
    workers.wait_ready()
    return Job("io_wait", "io", {"ms": 0, "probe_name": None}, setup.options.get("ignore_result"))


def run(server: RedisServer, *, rounds: int, tiny: bool, log_dir: Path) -> dict[str, Any]:
    size = SIZES["tiny" if tiny else "full"]
    spec = ScenarioSpec(
        name="overhead",
        title="5. Overhead: no-op jobs, events on",
        question="How many no-op jobs/s do the workers move end to end, and at what CPU cost?",
        metrics=[
            Metric("jobs_s", "jobs/s"),
            Metric("cpu_ms_per_job", "worker CPU ms/job", 2),
            Metric("cores_used", "worker cores used", 2),
            Metric("rss_mb", "worker RSS MB"),
        ],
        reference="celery",
        ratio_metric="jobs_s",
        size=f"{size['jobs']} no-op jobs per run, published at once with the fast path",
        chart={"metric": "jobs_s", "ylabel": "no-op jobs/s (higher is better)"},
    )

    def measure(setup: Setup, _round: int) -> dict[str, float]:
        with Workers(log_dir, server) as workers:
            job = start(workers, setup)
            return measure_batch(server, workers, [job] * size["jobs"], size["max_seconds"])

    return run_scenario(spec, setups(), rounds, measure, tiny=tiny)
