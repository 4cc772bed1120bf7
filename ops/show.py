"""``jobq show JOB_ID``: one job's story: state, timings, worker, retries, result or error, and
its pipeline neighbours (the job that sent it, the jobs it sent).

Facts come from two places: the job record the worker wrote when the job ended
(:mod:`workers.stores.job_records`: times, worker, pid, retries, parent, root and correlation
ids) and
Celery's result backend (state, result or traceback, children). A job still waiting in a queue
has neither yet: Celery reports it as PENDING, the same as an id it never saw.

Example::

    $ jobq show 6f1c…
    $ jobq show 6f1c… --json
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click
from celery.result import AsyncResult
from rich.console import Console
from rich.progress_bar import ProgressBar
from rich.table import Table

from workers.app import get_app
from workers.stores.cancels import normalized_cancel, read_cancel
from workers.stores.client import get_redis
from workers.stores.dead_letters import DeadLetterNotFound, get_dead
from workers.stores.job_records import read_records
from workers.stores.progress import Progress, read_progress

EXIT_NOT_FOUND = 1


def _neighbour(job_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": job_id,
        "name": record.get("name"),
        "state": record.get("state") or AsyncResult(job_id, app=get_app()).state,
    }


def collect_job(job_id: str) -> dict[str, Any] | None:
    """Everything known about ``job_id``, JSON-ready; None when nothing is known."""
    (record,) = read_records([job_id])
    result = AsyncResult(job_id, app=get_app())
    meta = result.backend.get_task_meta(job_id)
    state = meta.get("status") or result.state
    if state == "PENDING" and record.get("state"):
        # Fire and forget (ignore_result): no result, but the job record says how it ended.
        state = record["state"]
    cancel = _cancel_of(job_id, record)
    if cancel and state == "PENDING" and not record.get("state"):
        state = "PENDING (cancelled: a worker drops it when it would take it)"
    (progress,) = read_progress([job_id])
    if (
        not record.get("name") and state == "PENDING" and progress is None and not _is_dead(job_id)
    ):  # no record (read_records gives {} fields)
        return None
    outcome = meta.get("result")
    if state in ("FAILURE", "RETRY") and outcome is not None:
        error: str | None = f"{type(outcome).__name__}: {outcome}"
        value = None
    elif state == "PROGRESS":
        # Celery's custom state: its meta is the progress, shown as such, not as a result.
        error, value = None, None
    else:
        error, value = None, outcome
    children_ids = [child.id for child in (result.children or [])]
    parent_id = record.get("parent_id") or None
    neighbour_ids = ([parent_id] if parent_id else []) + children_ids
    neighbour_records = dict(zip(neighbour_ids, read_records(neighbour_ids), strict=True))
    try:
        dead = get_dead(job_id)
    except DeadLetterNotFound:
        dead = None
    return {
        "id": job_id,
        "name": record.get("name") or meta.get("name"),
        # In the dead-letter store (failed for good): why, and `jobq dead retry ID` applies.
        "dead_letter": {"reason": dead.get("reason"), "dead_at": dead.get("dead_at")}
        if dead
        else None,
        "state": state,
        # The job's own `progress()` reports: the latest while it runs, the last once it ended.
        "progress": progress.to_dict() if progress else None,
        "queue": record.get("queue"),
        "worker": record.get("worker"),
        "pid": record.get("pid"),
        "retries": record.get("retries", meta.get("retries")),
        "sent_at": record.get("sent_at"),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
        "wait_s": record.get("wait_s"),
        "run_s": record.get("run_s"),
        "correlation_id": record.get("correlation_id") or None,
        "root_id": record.get("root_id") or None,
        # Cancelled (`jobq cancel`): who and when (docs/cancel.md).
        "cancelled": cancel,
        "result": value,
        "error": error,
        "traceback": meta.get("traceback"),
        "parent": _neighbour(parent_id, neighbour_records[parent_id]) if parent_id else None,
        "children": [_neighbour(cid, neighbour_records[cid]) for cid in children_ids],
    }


def _cancel_of(job_id: str, record: dict[str, Any]) -> dict[str, Any] | None:
    """Who cancelled the job and when: from its record, else from the stored cancel."""
    if record.get("cancelled_by"):
        at = normalized_cancel({"when": record.get("cancelled_at") or None})["when"]
        return {"by": record["cancelled_by"], "at": at}
    stored = read_cancel(get_redis(), job_id)
    return {"by": stored.get("who"), "at": stored.get("when")} if stored else None


def _is_dead(job_id: str) -> bool:
    try:
        get_dead(job_id)
    except DeadLetterNotFound:
        return False
    return True


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")


def _duration(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f} ms"


def render_progress(progress: Progress) -> Table:
    """A bar (when the total is known) and ``done/total (percent) note``."""
    grid = Table.grid(padding=(0, 1))
    cells: list[Any] = []
    if progress.total:
        cells.append(ProgressBar(total=progress.total, completed=progress.done, width=30))
    cells.append(progress.describe())
    grid.add_row(*cells)
    return grid


def render_job(job: dict[str, Any]) -> Table:
    """A two-column table of the job's facts."""
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, Any]] = [
        ("job", f"{job['name'] or '?'}  {job['id']}"),
        ("state", job["state"]),
    ]
    if job.get("progress"):
        rows.append(("progress", render_progress(Progress.from_dict(job["progress"]))))
    rows += [
        ("queue", job["queue"] or "-"),
        ("worker", f"{job['worker'] or '-'} (pid {job['pid'] or '-'})"),
        ("retries", str(job["retries"] if job["retries"] is not None else "-")),
        ("sent", _when(job["sent_at"])),
        ("started", _when(job["started_at"])),
        ("finished", _when(job["finished_at"])),
        ("waited", _duration(job["wait_s"])),
        ("ran", _duration(job["run_s"])),
        ("correlation", job["correlation_id"] or "-"),
        ("pipeline root", job["root_id"] or "-"),
    ]
    parent = job["parent"]
    rows.append(("parent", f"{parent['name']} {parent['id']} {parent['state']}" if parent else "-"))
    children = job["children"]
    if not children:
        rows.append(("children", "-"))
    for index, child in enumerate(children):
        rows.append(
            ("children" if index == 0 else "", f"{child['name']} {child['id']} {child['state']}")
        )
    if job.get("cancelled"):
        by, at = job["cancelled"]["by"], job["cancelled"]["at"]
        rows.append(("cancelled", f"by {by} at {_when(at)}"))
    if job["dead_letter"]:
        rows.append(("dead letter", f"{job['dead_letter']['reason']} (jobq dead show {job['id']})"))
    if job["error"]:
        rows.append(("error", job["error"]))
    else:
        text = json.dumps(job["result"], default=str)
        rows.append(("result", text if len(text) <= 500 else text[:500] + " …"))
    for label, value in rows:
        table.add_row(label, value)
    return table


@click.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--traceback", "show_traceback", is_flag=True, help="Print the error's traceback.")
def show_command(job_id: str, as_json: bool, show_traceback: bool) -> None:
    """Show one job: state, timings, worker, retries, result or error, pipeline neighbours."""
    from producers.cli import broker_errors

    with broker_errors():
        job = collect_job(job_id)
    console = Console()
    if job is None:
        Console(stderr=True).print(
            f"[red]error:[/] no record of job {job_id} (unknown id, or still waiting in a queue)",
            highlight=False,
        )
        sys.exit(EXIT_NOT_FOUND)
    if as_json:
        click.echo(json.dumps(job, default=str, indent=2))
        return
    console.print(render_job(job))
    if show_traceback and job["traceback"]:
        console.print(job["traceback"], highlight=False)
