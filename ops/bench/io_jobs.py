"""Scenario 1, I/O jobs: HTTP GETs to a local server that answers after 100 ms.

jobq's I/O side (one gevent ``jobq worker io`` process per core, concurrency 100 and 500 each)
against what a user would otherwise run with Celery's defaults: a prefork pool of one process
per core, and Celery's threads pool of 50. Each job is a real ``fetch_url`` over keep-alive
connections to :mod:`ops.bench.delay_server`. The ideal rate is total concurrency ÷ 0.1 s;
"of ideal" says how close each setup gets. Slow setups are bounded in time, not in count.

Example::

    $ jobq bench io_jobs
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ops.bench.batch import Job, measure_batch
from ops.bench.delay_server import serve_delay
from ops.bench.harness import Workers
from ops.bench.rounds import (
    Metric,
    ScenarioSpec,
    Setup,
    run_scenario,
)
from ops.redis_server import RedisServer

DELAY_S = 0.1
SIZES = {"full": {"jobs": 2000, "max_seconds": 10.0}, "tiny": {"jobs": 30, "max_seconds": 20.0}}


def setups() -> list[Setup]:
    from workers.pools import io_process_count
    from workers.settings import get_settings

    processes = io_process_count(get_settings())
    return [
        Setup("threads", "Celery threads pool, c=50", {"kind": "threads", "slots": 50}),
        Setup("prefork", "Celery prefork, 1 per core (c=2)", {"kind": "prefork", "slots": 2}),
        Setup(
            "jobq-100",
            f"jobq I/O: {processes}× gevent c=100",
            {"kind": "jobq", "per_process": 100, "slots": 100 * processes},
        ),
        Setup(
            "jobq-100-ff",
            f"jobq I/O: {processes}× gevent c=100, fire and forget (no result)",
            {"kind": "jobq", "per_process": 100, "slots": 100 * processes, "ignore_result": True},
        ),
        Setup(
            "jobq-500",
            f"jobq I/O: {processes}× gevent c=500",
            {"kind": "jobq", "per_process": 500, "slots": 500 * processes},
        ),
    ]


def start(workers: Workers, setup: Setup) -> None:
    from workers.pools import io_process_count
    from workers.settings import get_settings

    options = setup.options
    if options["kind"] in ("threads", "prefork"):
        workers.celery(
            "ops.bench.baseline_app",
            pool=options["kind"],
            concurrency=options["slots"],
            queues=["io"],
        )
        return
    # The environment, not --concurrency: fetch_url sizes its keep-alive pool from it too.
    env = {"JOBQ_IO_CONCURRENCY": str(options["per_process"])}
    for _ in range(io_process_count(get_settings())):
        workers.jobq("io", env=env, ready=False)
    workers.wait_ready()


def run(server: RedisServer, *, rounds: int, tiny: bool, log_dir: Path) -> dict[str, Any]:
    from producers.submit import validate

    size = SIZES["tiny" if tiny else "full"]
    spec = ScenarioSpec(
        name="io_jobs",
        title="1. I/O jobs: HTTP GET answered after 100 ms",
        question="How many 100 ms HTTP jobs/s, how close to the ideal, at what memory?",
        metrics=[
            Metric("jobs_s", "jobs/s"),
            Metric("of_ideal", "% of ideal", 1),
            Metric("cpu_ms_per_job", "worker CPU ms/job", 2),
            Metric("cores_used", "worker cores used", 2),
            Metric("rss_mb", "worker RSS MB"),
            Metric("kb_per_slot", "RSS KB per concurrent job"),
        ],
        reference="threads",
        ratio_metric="jobs_s",
        size=(
            f"{size['jobs']} jobs per run, each bounded to {size['max_seconds']:.0f} s "
            "(slow setups report what they finished in that window)"
        ),
        chart={"metric": "jobs_s", "ylabel": "100 ms HTTP jobs/s (higher is better)"},
    )
    with serve_delay(int(DELAY_S * 1000)) as url:
        _, kwargs = validate("fetch_url", {"url": f"{url}/100", "timeout": 10})

        def measure(setup: Setup, _round: int) -> dict[str, float]:
            with Workers(log_dir, server) as workers:
                start(workers, setup)
                job = Job("fetch_url", "io", kwargs, setup.options.get("ignore_result"))
                jobs = [job] * size["jobs"]
                values = measure_batch(server, workers, jobs, size["max_seconds"])
            slots = setup.options["slots"]
            values["of_ideal"] = 100 * values["jobs_s"] / (slots / DELAY_S)
            values["kb_per_slot"] = values["rss_mb"] * 1000 / slots
            return values

        return run_scenario(spec, setups(), rounds, measure, tiny=tiny)
