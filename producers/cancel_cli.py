"""``jobq cancel``: cancel jobs by id, or every queued job of one kind.

Example::

    $ jobq cancel 6f1c2a8e-1c3b-4c1e-9a57-0d4d4a8f0b1c
    cancelled 1 job
    $ jobq cancel --job io_wait --queued
    cancelled 312 jobs
"""

from __future__ import annotations

import json
import sys
from typing import NoReturn

import click

from producers.cancel import cancel, finished_states, is_job_id, queued_ids, unknown_ids
from producers.cli import EXIT_BAD_INPUT, broker_errors
from workers.jobs_option import jobs_option
from workers.registry import UnknownJob


def fail_input(message: str) -> NoReturn:
    """One line on stderr (never wrapped: scripts read it), exit status 2."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_BAD_INPUT)


@click.command()
@jobs_option
@click.argument("job_ids", nargs=-1)
@click.option("--job", "job_name", help="With --queued: the job whose waiting jobs to cancel.")
@click.option("--queued", is_flag=True, help="Cancel every job of --job waiting now.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def cancel_command(job_ids: tuple[str, ...], job_name: str | None, queued: bool, as_json: bool):
    """Cancel jobs: queued ones never start, running ones stop (docs/cancel.md)."""
    if bool(job_name) != queued:
        fail_input("--job NAME and --queued go together (jobq cancel --job NAME --queued)")
    if not job_ids and not job_name:
        fail_input("give job ids, or --job NAME --queued")
    bad = [job_id for job_id in job_ids if not is_job_id(job_id)]
    if bad:
        fail_input(f"not a job id: {bad[0]!r}")
    with broker_errors():
        ids = list(job_ids)
        if ids:
            # No trace yet is not an error: a pipeline's later step (the id `jobq submit`
            # prints) exists only once the step before it ends. The cancel is stored either
            # way and holds if the job comes.
            for job_id in unknown_ids(ids):
                click.echo(f"{job_id}: no such job yet; the cancel holds if it comes", err=True)
            done = finished_states(ids)
            for job_id, state in done.items():
                click.echo(f"{job_id} already ended ({state}): not cancelled", err=True)
            ids = [job_id for job_id in ids if job_id not in done]
        queued: list[str] = []
        if job_name:
            try:
                queued = queued_ids(job_name)
            except (UnknownJob, ValueError) as exc:
                fail_input(str(exc).strip("\"'"))
        # Waiting jobs need no broadcast: the take drops them, and one a worker took meanwhile
        # is found at its next lease renewal.
        cancelled = cancel(ids) if ids else []
        cancelled += cancel([i for i in queued if i not in cancelled], broadcast=False)
    if as_json:
        click.echo(json.dumps({"cancelled": cancelled}))
        return
    click.echo(f"cancelled {len(cancelled)} job{'' if len(cancelled) == 1 else 's'}")
