"""``jobq dead list|show|retry|purge``: inspect and act on dead letters.

Dead letters are jobs that failed for good (error, exhausted retries, lost process, time limit)
and messages the workers refused (pickle, not JSON, unknown job, invalid arguments); see
:mod:`workers.stores.dead_letters`. Exit status: 0 done; 1 an id was not found or cannot be
retried, or
Redis could not be reached; 2 bad usage.

Example::

    $ jobq dead list --reason retries_exhausted
    $ jobq dead show 3f0c…            # arguments, error, traceback
    $ jobq dead retry 3f0c…           # re-submit under a new id (arguments validated again)
    $ jobq dead purge --reason unknown_job --yes
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click
from rich.console import Console
from rich.table import Table

from producers.cli import broker_errors, queue_full_exit
from producers.dead_letters import retry_dead
from workers.stores.dead_letters import (
    REASONS,
    DeadLetterNotFound,
    NotRetryable,
    count_dead,
    get_dead,
    list_dead,
    purge_dead,
)

out = Console()
err = Console(stderr=True)
reason_option = click.option(
    "--reason", type=click.Choice(sorted(REASONS)), help="Only dead letters of this reason."
)


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


@click.group()
def dead_command() -> None:
    """Dead letters: jobs that failed for good and messages that were refused."""


@dead_command.command("list")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@reason_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def list_command(limit: int, reason: str | None, as_json: bool) -> None:
    """List dead letters, newest first."""
    with broker_errors():
        entries = list_dead(limit=limit, reason=reason)
        total = count_dead()
    if as_json:
        for entry in entries:
            print(json.dumps({k: v for k, v in entry.items() if k != "traceback"}))
        return
    table = Table(title="dead letters")
    table.add_column("id", overflow="fold")  # whole, even if folded: `show`/`retry` need it
    for column in ("when (UTC)", "job", "queue", "reason", "error"):
        table.add_column(column)
    for entry in entries:
        table.add_row(
            entry["id"],
            _when(entry["dead_at"]),
            str(entry.get("job") or "-"),
            str(entry.get("queue") or "-"),
            entry["reason"],
            str(entry.get("error", ""))[:60],
        )
    out.print(table)
    err.print(f"{len(entries)} shown of {total} dead letter(s)", highlight=False)


@dead_command.command("show")
@click.argument("entry_id")
@click.option("--json", "as_json", is_flag=True)
def show_command(entry_id: str, as_json: bool) -> None:
    """Show one dead letter with its arguments, error and traceback."""
    with broker_errors():
        try:
            entry = get_dead(entry_id)
        except DeadLetterNotFound as exc:
            err.print(f"[red]error:[/] {exc}", highlight=False)
            sys.exit(1)
    if as_json:
        print(json.dumps(entry, indent=2))
        return
    for key in ("id", "job", "queue", "reason", "error", "retries", "worker", "content_type"):
        if entry.get(key) not in (None, ""):
            out.print(f"[bold]{key}:[/] {entry[key]}", highlight=False)
    out.print(f"[bold]dead at:[/] {_when(entry['dead_at'])} UTC ({REASONS[entry['reason']]})")
    if "kwargs" in entry or "args" in entry:
        arguments = {"args": entry.get("args", []), "kwargs": entry.get("kwargs", {})}
        out.print("[bold]arguments:[/] " + json.dumps(arguments), highlight=False)
    if entry.get("body") is not None:
        out.print("[bold]raw body:[/] " + str(entry["body"])[:2000], highlight=False)
    if entry.get("traceback"):
        out.print("[bold]traceback:[/]\n" + entry["traceback"], highlight=False)


@dead_command.command("retry")
@click.argument("entry_ids", nargs=-1)
@reason_option
@click.option("--all", "retry_all", is_flag=True, help="Retry every (matching) dead letter.")
def retry_command(entry_ids: tuple[str, ...], reason: str | None, retry_all: bool) -> None:
    """Re-submit dead jobs under new ids; their arguments are validated again first."""
    if bool(entry_ids) == retry_all:
        raise click.UsageError("give dead-letter ids, or --all (optionally with --reason)")
    failed = 0
    # Over the high-water mark (JOBQ_ON_FULL=fail, or JOBQ_GATE_TIMEOUT out): one line, exit 3;
    # the entries not yet retried stay dead letters.
    with broker_errors(), queue_full_exit():
        ids = list(entry_ids) or [e["id"] for e in list_dead(limit=10**9, reason=reason)]
        for entry_id in ids:
            try:
                new_id = retry_dead(entry_id)
            except (DeadLetterNotFound, NotRetryable) as exc:
                err.print(f"[red]error:[/] {exc}", highlight=False)
                failed += 1
                continue
            print(f"{entry_id} -> {new_id}")
    if failed:
        sys.exit(1)


@dead_command.command("purge")
@reason_option
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def purge_command(reason: str | None, yes: bool) -> None:
    """Delete dead letters (all, or those of one --reason)."""
    what = f"dead letters with reason {reason}" if reason else "ALL dead letters"
    if not yes:
        click.confirm(f"Delete {what}?", abort=True)
    with broker_errors():
        removed = purge_dead(reason)
    err.print(f"purged {removed} dead letter(s)", highlight=False)
