"""The demo's summary: per pool, how many jobs ran, how many failed, how long they waited and ran.

Pure functions over job records (what :func:`workers.stores.job_records.read_records`
returns), so the
maths is unit-tested without Redis. A job is a list of step records: one for an io or cpu job,
one per step for a pipeline, whose wait and run times are the sums over its steps. Wall time is
from the first job sent to the last job finished. ``jobq up --demo`` prints the table.

Example::

    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
    >>> row = summarize_pool("io", [[{"state": "SUCCESS", "sent_at": 0.0, "started_at": 0.5,
    ...     "finished_at": 1.5, "wait_s": 0.5, "run_s": 1.0}]])
    >>> (row.jobs, row.failed, row.wall_s, row.wait_p50)
    (1, 0, 1.5, 0.5)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from ops.percentiles import percentile

Record = Mapping[str, Any]
JobRecords = Sequence[Record]  # the records of one job's steps, in order; {} = not finished

SUCCESS = "SUCCESS"
FINAL_FAILURES = frozenset({"FAILURE", "REVOKED", "REJECTED"})


def job_failed(steps: JobRecords) -> bool:
    """True when any step ended in a final failure state (later steps then never run)."""
    return any(step.get("state") in FINAL_FAILURES for step in steps)


def job_finished(steps: JobRecords) -> bool:
    """True once the job has an outcome: every step succeeded, or one failed for good."""
    if job_failed(steps):
        return True
    return bool(steps) and all(step.get("state") == SUCCESS for step in steps)


def _total(steps: JobRecords, key: str) -> float | None:
    # Over the steps that ran: a pipeline whose first step failed still waited and ran.
    values = [float(step[key]) for step in steps if step.get(key) is not None]
    return sum(values) if values else None


@dataclass(frozen=True)
class PoolSummary:
    """One row of the summary table; times in seconds, None where nothing was measured."""

    pool: str
    jobs: int
    failed: int
    unfinished: int
    wall_s: float | None
    wait_p50: float | None
    wait_p95: float | None
    run_p50: float | None
    run_p95: float | None


def summarize_pool(pool: str, jobs: Sequence[JobRecords]) -> PoolSummary:
    """Summarize the jobs of one pool (or of the pipelines)."""
    finished = [steps for steps in jobs if job_finished(steps)]
    waits = [w for steps in finished if (w := _total(steps, "wait_s")) is not None]
    runs = [r for steps in finished if (r := _total(steps, "run_s")) is not None]
    return PoolSummary(
        pool=pool,
        jobs=len(jobs),
        failed=sum(1 for steps in finished if job_failed(steps)),
        unfinished=len(jobs) - len(finished),
        wall_s=wall_time(finished),
        wait_p50=percentile(waits, 50),
        wait_p95=percentile(waits, 95),
        run_p50=percentile(runs, 50),
        run_p95=percentile(runs, 95),
    )


def wall_time(jobs: Iterable[JobRecords]) -> float | None:
    """Seconds from the first step sent to the last step finished, over these jobs."""
    steps = [step for job in jobs for step in job]
    sent = [s["sent_at"] for s in steps if s.get("sent_at") is not None]
    done = [s["finished_at"] for s in steps if s.get("finished_at") is not None]
    if not sent or not done:
        return None
    return max(done) - min(sent)


def summarize(jobs_by_pool: Mapping[str, Sequence[JobRecords]]) -> list[PoolSummary]:
    """One row per pool, in the mapping's order."""
    return [summarize_pool(pool, jobs) for pool, jobs in jobs_by_pool.items()]


def format_seconds(value: float | None) -> str:
    """Milliseconds below one second, seconds above; '-' when nothing was measured.

    >>> format_seconds(0.0123), format_seconds(2.345), format_seconds(None)
    ('12 ms', '2.35 s', '-')
    """
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def summary_table(rows: Sequence[PoolSummary], *, title: str = "Demo summary") -> Table:
    """The rich table ``jobq up --demo`` prints."""
    table = Table(title=title, title_justify="left")
    table.add_column("pool", no_wrap=True, min_width=len("pipelines"))
    for header in ("jobs", "failed"):
        table.add_column(header, justify="right")
    if any(row.unfinished for row in rows):
        table.add_column("unfinished", justify="right")
    for header in ("wall", "wait p50", "wait p95", "run p50", "run p95"):
        table.add_column(header, justify="right")
    for row in rows:
        cells = [row.pool, str(row.jobs), str(row.failed)]
        if any(r.unfinished for r in rows):
            cells.append(str(row.unfinished))
        cells += [
            format_seconds(v)
            for v in (row.wall_s, row.wait_p50, row.wait_p95, row.run_p50, row.run_p95)
        ]
        table.add_row(*cells, style="red" if row.failed or row.unfinished else None)
    return table
