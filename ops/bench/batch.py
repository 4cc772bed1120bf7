"""One measured batch: publish jobs, wait for their ``task-succeeded`` events, meter the workers.

Scenarios 1, 2, 4 and 5 are all "start these workers, give them this batch, measure"; they
differ only in the workers and the jobs. A batch is bounded in time as well as in count: a
slow setup (prefork with two processes doing 100 ms waits) would take minutes to finish what
gevent does in seconds, so after ``max_seconds`` the rate is what completed so far.

Example::

    values = measure_batch(server, workers, [Job("io_wait", "io", {"ms": 0})] * 2000, 30)
    values["jobs_s"], values["cpu_ms_per_job"], values["rss_mb"]
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ops.bench.harness import EventTap, Meter, Workers, publish, purge
from ops.percentiles import percentile
from ops.redis_server import RedisServer


@dataclass(frozen=True)
class Job:
    """A job to enqueue: task name, queue and (already validated) kwargs."""

    name: str
    queue: str
    kwargs: dict[str, Any]
    ignore_result: bool | None = None


def publish_jobs(jobs: Sequence[Job]) -> list[str]:
    """Enqueue ``jobs`` in their order, one fast-path batch per run of the same name and queue."""
    ids: list[str] = []
    start = 0
    while start < len(jobs):
        end = start
        first = jobs[start]
        while end < len(jobs) and (jobs[end].name, jobs[end].queue, jobs[end].ignore_result) == (
            first.name,
            first.queue,
            first.ignore_result,
        ):
            end += 1
        kwargs = [job.kwargs for job in jobs[start:end]]
        ids += publish(first.name, first.queue, kwargs, ignore_result=first.ignore_result)
        start = end
    return ids


def measure_batch(
    server: RedisServer,
    workers: Workers,
    jobs: Sequence[Job],
    max_seconds: float,
    *,
    submit: Callable[[], list[str]] | None = None,
) -> dict[str, float]:
    """Publish ``jobs`` (or call ``submit``, which returns the ids to wait for) and measure.

    Returns jobs/s over the jobs finished within ``max_seconds``, worker CPU ms per finished job,
    peak RSS of all worker processes (MB), latency percentiles from publish to finish (ms) and
    the fraction of the batch finished.
    """
    with EventTap(server) as tap, Meter(workers.pids()) as meter:
        started = time.time()
        ids = submit() if submit else publish_jobs(jobs)
        complete = tap.wait(ids, timeout=max_seconds)
        # Complete: up to the last job's finish (from its event); else the whole time window.
        elapsed = (max(tap.finished_at(ids)) if complete and ids else time.time()) - started
    finished = tap.finished_at(ids)
    purge(server, sorted({job.queue for job in jobs} or {"io", "cpu"}))
    latencies = [(at - started) * 1000 for at in finished]
    done = len(finished)
    return {
        "jobs": float(done),
        "done_fraction": done / max(1, len(ids)),
        "wall_s": elapsed,
        "jobs_s": done / elapsed if elapsed > 0 else float("nan"),
        "cpu_ms_per_job": meter.cpu_seconds * 1000 / done if done else float("nan"),
        "rss_mb": meter.rss_peak / 1e6,
        # How much CPU the workers got: on a shared machine, less than the cores they could use.
        "cores_used": meter.cpu_seconds / elapsed if elapsed > 0 else float("nan"),
        "p50_ms": percentile(latencies, 50, empty=math.nan),
        "p99_ms": percentile(latencies, 99, empty=math.nan),
        "failed": float(len(tap.failed)),
    }
