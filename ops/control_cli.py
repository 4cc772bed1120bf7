"""``jobq limits`` and ``jobq pause|resume``: operate rate limits and the kill switch at run time.

Both act through Redis, so they reach every worker of every host or container without a
restart: limits are re-read by workers within a second; a pause is broadcast to the workers
and persists for workers started later.

Example::

    $ jobq limits                       # declared, run-time and effective rate per job
    $ jobq limits set fetch_url 5/s     # each host (fetch_url's key) at most 5 requests/s
    $ jobq limits set io_wait off       # no limit, even if the code declares one
    $ jobq limits clear fetch_url       # back to the declared rate
    $ jobq pause io && jobq resume io
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import click
from rich.console import Console
from rich.table import Table

from ops.pausing import pause, resume
from producers.cli import broker_errors
from workers.catalog import all_jobs, get_job
from workers.pools import POOLS
from workers.registry import UnknownJob
from workers.stores.pause_flags import UnknownPool
from workers.stores.rate_limits import InvalidRate, clear_limit, describe_limits, set_limit

EXIT_BAD_INPUT = 2

out = Console()
err = Console(stderr=True)


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def limits_command(ctx: click.Context, as_json: bool) -> None:
    """Show each job's rate limit (declared in code, set at run time, in effect) and its waits."""
    if ctx.invoked_subcommand is not None:
        return
    with broker_errors():
        rows = describe_limits(all_jobs())
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("job", "declared", "run-time", "in effect", "per", "waits", "waited s", "parked")
    for row in rows:
        table.add_row(
            row["job"], row["declared"] or "-", row["override"] or "-",
            row["effective"] or "none", row["key"] or "job",
            f"{row['waits']:.0f}", f"{row['wait_seconds']:.1f}", f"{row['parked']:.0f}",
        )  # fmt: skip
    out.print(table)


@limits_command.command("set")
@click.argument("job")
@click.argument("rate")
def limits_set(job: str, rate: str) -> None:
    """Limit JOB to RATE (20/s, 600/m, 3600/h) across all workers; 'off' disables its limit."""
    _known_job(job)
    with broker_errors():
        try:
            value = set_limit(job, rate)
        except InvalidRate as exc:
            _fail(str(exc))
    err.print(f"{job}: {value} (workers apply it within a second)", highlight=False)


@limits_command.command("clear")
@click.argument("job")
def limits_clear(job: str) -> None:
    """Remove JOB's run-time limit: the rate declared in code (if any) applies again."""
    _known_job(job)
    with broker_errors():
        removed = clear_limit(job)
    err.print(f"{job}: run-time limit {'cleared' if removed else 'was not set'}", highlight=False)


@click.command()
@click.argument("pool", type=click.Choice(sorted(POOLS)))
@click.option("--timeout", type=float, default=1.0, show_default=True, help="Wait for replies.")
def pause_command(pool: str, timeout: float) -> None:
    """Stop every POOL worker from taking new jobs (running ones finish); persists until resume."""
    with broker_errors():
        confirmed = _switch(pause, pool, timeout)
    err.print(
        f"{pool} paused: {len(confirmed)} worker(s) stopped consuming; workers started later "
        "stay paused; producers keep enqueueing up to the high-water mark",
        highlight=False,
    )


@click.command()
@click.argument("pool", type=click.Choice(sorted(POOLS)))
@click.option("--timeout", type=float, default=1.0, show_default=True, help="Wait for replies.")
def resume_command(pool: str, timeout: float) -> None:
    """Let POOL's workers take jobs again."""
    with broker_errors():
        confirmed = _switch(resume, pool, timeout)
    err.print(f"{pool} resumed: {len(confirmed)} worker(s) consuming again", highlight=False)


def _switch(action: Callable[..., list[str]], pool: str, timeout: float) -> list[str]:
    try:
        return action(pool, timeout=timeout)
    except UnknownPool as exc:
        _fail(str(exc))
        return []


def _known_job(job: str) -> None:
    try:
        get_job(job)
    except UnknownJob as exc:
        _fail(str(exc))


def _fail(message: str) -> None:
    err.print(f"[red]error:[/] {message}", highlight=False)
    sys.exit(EXIT_BAD_INPUT)
