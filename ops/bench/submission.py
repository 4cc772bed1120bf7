"""Scenario 6, submission: how many jobs/s one producer process can enqueue.

Three ways to enqueue the same ``io_wait`` job from one process: Celery's ``apply_async`` in a
loop (the reference), jobq's ``submit`` in a loop, and jobq's ``submit_many``, which validates
every item and then publishes Celery protocol-2 messages in pipelined batches
(producers/fastpublish.py). No worker runs; the queue is emptied after each measurement.
CPU is this producer process's own (``time.process_time``).

Example::

    $ jobq bench submission
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ops.bench.harness import purge
from ops.bench.rounds import Metric, ScenarioSpec, Setup, run_scenario
from ops.redis_server import RedisServer

SIZES = {"full": {"loop": 1500, "batch": 20_000}, "tiny": {"loop": 20, "batch": 200}}


def setups() -> list[Setup]:
    return [
        Setup("apply_async", "Celery apply_async in a loop", {"how": "apply_async"}),
        Setup("submit", "jobq submit in a loop", {"how": "submit"}),
        Setup("submit_many", "jobq submit_many (one call)", {"how": "submit_many"}),
    ]


def _enqueue(how: str, count: int) -> Callable[[], int]:
    from producers.submit import submit, submit_many
    from workers.app import get_app

    # jobq's own app: the job is a shared task, whose proxy follows whatever app is current.
    task = get_app().tasks["io_wait"]

    def apply_async() -> int:
        for _ in range(count):
            task.apply_async(kwargs={"ms": 1})
        return count

    def submit_loop() -> int:
        for _ in range(count):
            submit("io_wait", ms=1)
        return count

    def submit_batch() -> int:
        return len(submit_many("io_wait", [{"ms": 1}] * count))

    return {"apply_async": apply_async, "submit": submit_loop, "submit_many": submit_batch}[how]


def run(server: RedisServer, *, rounds: int, tiny: bool, log_dir: Path) -> dict[str, Any]:
    size = SIZES["tiny" if tiny else "full"]
    spec = ScenarioSpec(
        name="submission",
        title="6. Submission from one producer process",
        question="How many jobs/s can one producer process enqueue?",
        metrics=[
            Metric("jobs_s", "jobs/s"),
            Metric("cpu_ms_per_job", "producer CPU ms/job", 3),
        ],
        reference="apply_async",
        ratio_metric="jobs_s",
        size=(
            f"loops: {size['loop']:,} jobs per run; submit_many: {size['batch']:,} jobs per run; "
            "io_wait(ms=1), no worker running"
        ),
        chart={"metric": "jobs_s", "ylabel": "jobs/s enqueued by one process (higher is better)"},
    )
    client = server.client()

    def measure(setup: Setup, _round: int) -> dict[str, float]:
        how = setup.options["how"]
        enqueue = _enqueue(how, size["batch"] if how == "submit_many" else size["loop"])
        cpu, wall = time.process_time(), time.perf_counter()
        count = enqueue()
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        queued = int(client.llen("io"))
        purge(server, ["io"])
        return {
            "jobs_s": count / wall,
            "cpu_ms_per_job": cpu * 1000 / count,
            "queued": float(queued),
        }

    # Every setup even when tiny: the three loops are seconds in all.
    return run_scenario(spec, setups(), rounds, measure, tiny=False)
