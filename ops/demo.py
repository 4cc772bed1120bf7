"""The demo workload of ``jobq up --demo``: real I/O jobs, CPU jobs and pipelines crossing both.

The mix: ``fetch_url`` of pages and of slow endpoints on the local site, ``io_wait``,
``analyze_text`` of prose, ``cpu_spin``, and ``fetch_and_analyze`` pipelines (fetch on the
I/O pool, analyze on the CPU pool). It is deterministic for a seed, so two runs do the same work.
Progress is counted from the job records workers write when each job ends.

Example::

    with serve_local_site() as site:
        jobs = submit_workload(build_workload(300, site))
        records = wait_for_jobs(jobs, console=Console(), timeout=120)
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ops.demo_summary import JobRecords, job_failed, job_finished
from ops.local_site import LocalSite, prose
from producers import submit, validate
from workers.app import get_app
from workers.stores.job_records import read_records

# Rows of the summary, in this order: the two pools and the pipelines that cross them.
POOL_ROWS = ("io", "cpu", "pipelines")
PIPELINE_ROW = "pipelines"

Recipe = Callable[[random.Random, int, LocalSite], tuple[str, dict[str, Any]]]


def _fetch_page(rng: random.Random, i: int, site: LocalSite) -> tuple[str, dict[str, Any]]:
    return "fetch_url", {"url": site.url(f"/page/{i}?words={rng.randint(300, 3000)}")}


def _fetch_slow(rng: random.Random, i: int, site: LocalSite) -> tuple[str, dict[str, Any]]:
    return "fetch_url", {"url": site.url(f"/delay/{rng.randint(50, 1500)}")}


def _io_wait(rng: random.Random, i: int, site: LocalSite) -> tuple[str, dict[str, Any]]:
    return "io_wait", {"ms": rng.randint(100, 2000)}


def _analyze(rng: random.Random, i: int, site: LocalSite) -> tuple[str, dict[str, Any]]:
    return "analyze_text", {"text": prose(i, rng.randint(2000, 8000)), "top": 5}


def _spin(rng: random.Random, i: int, site: LocalSite) -> tuple[str, dict[str, Any]]:
    return "cpu_spin", {"ms": rng.randint(50, 250)}


def _pipeline(rng: random.Random, i: int, site: LocalSite) -> tuple[str, dict[str, Any]]:
    url = site.url(f"/page/{i}?words={rng.randint(2000, 8000)}")
    return "fetch_and_analyze", {"url": url, "top": 5}


# (recipe, weight): about half the jobs wait on sockets, a third compute, the rest cross both.
MIX: tuple[tuple[Recipe, int], ...] = (
    (_fetch_page, 15),
    (_fetch_slow, 15),
    (_io_wait, 15),
    (_analyze, 15),
    (_spin, 20),
    (_pipeline, 20),
)


def split_counts(total: int, weights: Sequence[int]) -> list[int]:
    """Split ``total`` by ``weights`` into whole numbers summing exactly to ``total``.

    Largest remainders get the leftovers, so small totals still follow the weights closely.

    >>> split_counts(10, [1, 1, 1])
    [4, 3, 3]
    """
    whole = sum(weights)
    shares = [total * w / whole for w in weights]
    counts = [int(s) for s in shares]
    by_remainder = sorted(range(len(weights)), key=lambda i: shares[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def build_workload(count: int, site: LocalSite, *, seed: int = 2) -> list[tuple[str, dict]]:
    """``count`` (job name, arguments) pairs following :data:`MIX`, in a shuffled order."""
    rng = random.Random(seed)
    counts = split_counts(count, [weight for _, weight in MIX])
    workload = [
        recipe(rng, i, site) for (recipe, _), n in zip(MIX, counts, strict=True) for i in range(n)
    ]
    rng.shuffle(workload)  # interleaved, as real traffic is
    return workload


@dataclass(frozen=True)
class DemoJob:
    """A submitted demo job: its summary row and the Celery ids of its steps, in order."""

    row: str
    name: str
    step_ids: tuple[str, ...]


def submit_one(name: str, arguments: dict[str, Any]) -> DemoJob:
    """Validate and enqueue one job, keeping the id of every step."""
    spec, checked = validate(name, arguments)
    if spec.kind == "pipeline":
        # Celery canvas returns the last step's result linked to its parents: keep every step's
        # id, so a failed first step is seen at once rather than at the deadline.
        last = spec.canvas(get_app(), checked).apply_async()
        ids, node = [], last
        while node is not None:
            ids.append(node.id)
            node = node.parent
        return DemoJob(row=PIPELINE_ROW, name=name, step_ids=tuple(reversed(ids)))
    handle = submit(name, **checked)
    return DemoJob(row=spec.kind, name=name, step_ids=(handle.id,))


def submit_workload(
    workload: Sequence[tuple[str, dict]], *, should_stop: Callable[[], bool] = lambda: False
) -> list[DemoJob]:
    """Submit every job in order; stop early (and return what was sent) once ``should_stop``."""
    jobs = []
    for name, arguments in workload:
        if should_stop():
            break
        jobs.append(submit_one(name, arguments))
    return jobs


def read_job_records(jobs: Sequence[DemoJob]) -> list[list[dict[str, Any]]]:
    """The step records of each job, in one pipelined round trip."""
    flat = read_records([step for job in jobs for step in job.step_ids])
    records, offset = [], 0
    for job in jobs:
        records.append(flat[offset : offset + len(job.step_ids)])
        offset += len(job.step_ids)
    return records


def wait_for_jobs(
    jobs: Sequence[DemoJob], *, console: Console, timeout: float, poll_interval: float = 0.25
) -> list[list[dict[str, Any]]]:
    """Show a progress bar per row until every job has an outcome or ``timeout`` passes.

    Returns each job's step records (``{}`` for steps that never finished).
    """
    records: list[list[dict[str, Any]]] = [[{} for _ in job.step_ids] for job in jobs]
    pending = set(range(len(jobs)))
    columns = (
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("[red]{task.fields[failed]} failed", style="red"),
        TimeElapsedColumn(),
    )
    deadline = time.monotonic() + timeout
    with Progress(*columns, console=console) as progress:
        bars = {
            row: progress.add_task(row, total=sum(1 for j in jobs if j.row == row), failed=0)
            for row in POOL_ROWS
        }
        while pending and time.monotonic() < deadline:
            order = sorted(pending)
            for index, steps in zip(order, read_job_records([jobs[i] for i in order]), strict=True):
                records[index] = steps
                if job_finished(steps):
                    pending.discard(index)
            for row, bar in bars.items():
                rows = [r for j, r in zip(jobs, records, strict=True) if j.row == row]
                done = [steps for steps in rows if job_finished(steps)]
                failed = sum(1 for steps in done if job_failed(steps))
                progress.update(bar, completed=len(done), failed=failed)
            if pending:
                time.sleep(poll_interval)
    return records


def group_by_row(
    jobs: Sequence[DemoJob], records: Sequence[JobRecords]
) -> dict[str, list[JobRecords]]:
    """Each summary row's jobs' records, rows in :data:`POOL_ROWS` order."""
    grouped: dict[str, list[JobRecords]] = {row: [] for row in POOL_ROWS}
    for job, steps in zip(jobs, records, strict=True):
        grouped[job.row].append(steps)
    return grouped
