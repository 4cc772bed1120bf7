"""Scenario 4, mixed batch: I/O jobs, CPU jobs and pipelines together on the same two cores.

One batch — ``fetch_url`` against a 100 ms server, ``cpu_spin(50)``, and ``fetch_and_analyze``
pipelines (fetch a page on the I/O side, analyze it on the CPU side) — is run by jobq's two
pools, by one Celery worker with the default pool (prefork, one process per core) consuming
both queues, and by one gevent worker consuming both. All three run the same jobq app and job
code; only the worker layout differs. The figure is the wall time until the last job finished.

Example::

    $ jobq bench mixed
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ops.bench.batch import Job, measure_batch, publish_jobs
from ops.bench.delay_server import serve_delay
from ops.bench.harness import Workers
from ops.bench.rounds import (
    Metric,
    ScenarioSpec,
    Setup,
    run_scenario,
)
from ops.local_site import serve_local_site
from ops.redis_server import RedisServer

SIZES = {
    "full": {"io": 300, "cpu": 100, "pipelines": 20, "max_seconds": 45.0},
    "tiny": {"io": 6, "cpu": 4, "pipelines": 2, "max_seconds": 30.0},
}


def setups() -> list[Setup]:
    from workers.pools import io_process_count
    from workers.settings import get_settings

    processes = io_process_count(get_settings())
    return [
        Setup(
            "prefork", "one Celery worker, default pool: prefork c=2 on io+cpu", {"pool": "prefork"}
        ),
        Setup("gevent", "one gevent worker c=100 on io+cpu", {"pool": "gevent"}),
        Setup("jobq", f"jobq: prefork c=2 on cpu + {processes}× gevent on io", {"pool": "jobq"}),
    ]


def start(workers: Workers, setup: Setup) -> None:
    from workers.pools import io_process_count
    from workers.settings import get_settings

    pool = setup.options["pool"]
    if pool != "jobq":
        workers.celery(
            "workers.app",
            pool=pool,
            concurrency=2 if pool == "prefork" else 100,
            queues=["io", "cpu"],
        )
        return
    workers.jobq("cpu", ready=False)
    for _ in range(io_process_count(get_settings())):
        workers.jobq("io", ready=False)
    workers.wait_ready()


def run(server: RedisServer, *, rounds: int, tiny: bool, log_dir: Path) -> dict[str, Any]:
    from producers.submit import submit, validate

    size = SIZES["tiny" if tiny else "full"]
    spec = ScenarioSpec(
        name="mixed",
        title="4. Mixed batch on two cores",
        question="How long does one mixed batch of I/O, CPU and pipeline jobs take end to end?",
        metrics=[
            Metric("wall_s", "wall time s", 1),
            Metric("cpu_ms_per_job", "worker CPU ms/job", 1),
            Metric("done_fraction", "finished", 2),
        ],
        reference="prefork",
        ratio_metric="wall_s",
        lower_is_better=True,
        size=(
            f"{size['io']} fetch_url (100 ms server) + {size['cpu']} cpu_spin(50) + "
            f"{size['pipelines']} fetch_and_analyze pipelines (2 000-word pages); "
            f"bounded to {size['max_seconds']:.0f} s"
        ),
        chart={"metric": "wall_s", "ylabel": "wall time for the batch, s (lower is better)"},
    )
    with serve_delay(100) as delay_url, serve_local_site() as site:
        _, fetch = validate("fetch_url", {"url": f"{delay_url}/100", "timeout": 10})
        jobs = [Job("fetch_url", "io", fetch)] * size["io"]
        jobs += [Job("cpu_spin", "cpu", {"ms": 50, "probe_name": None})] * size["cpu"]

        def submit_batch() -> list[str]:
            ids = publish_jobs(jobs)
            for n in range(size["pipelines"]):
                # Pipelines go through Celery's canvas (apply_async); the handle is the last step.
                ids.append(submit("fetch_and_analyze", url=site.url(f"/page/{n}"), top=5).id)
            return ids

        def measure(setup: Setup, _round: int) -> dict[str, float]:
            with Workers(log_dir, server) as workers:
                start(workers, setup)
                return measure_batch(
                    server, workers, jobs, size["max_seconds"], submit=submit_batch
                )

        return run_scenario(spec, setups(), rounds, measure, tiny=tiny)
